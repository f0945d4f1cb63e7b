"""The backend timing table of the chapters: every usable backend gets a row, checked against NumPy."""
import numpy as np

import rnnbook as rb
from rnnbook.book.timing import backend_timings


def test_timing_table_for_a_cell():
    table = backend_timings("gru", 3, 4, 5, 2, repeats=1)
    assert [r["backend"] for r in table.rows] == rb.available_backends()
    numpy_row = table.rows[rb.available_backends().index("numpy")]
    assert numpy_row["max_rel_diff"] == 0.0 and numpy_row["forward_ms"] > 0
    assert "gru" in str(table) and "| backend |" in table._repr_markdown_()


def test_timing_table_for_a_layer_whose_output_is_wider_than_hidden_size():
    """A bidirectional (or bidirectional stacked) core outputs 2H: the upstream gradient takes y's width."""
    for arch, options in (("bidirectional", dict(cell="lstm")),
                          ("stacked", dict(cell="gru", num_layers=2, bidirectional=True, dense=True))):
        table = backend_timings(arch, 3, 4, 5, 2, dtype=np.float64, repeats=1, **options)
        row = table.rows[rb.available_backends().index("numpy")]
        assert row.get("note") is None and row["backward_ms"] > 0, str(table)
