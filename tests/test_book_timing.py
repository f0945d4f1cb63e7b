"""The backend timing table of the chapters: every usable backend gets a row, and a backend that
lacks an architecture, or only one form of it (options), gets a row with a note instead of an error."""
import numpy as np

import rnnbook as rb
from rnnbook import dispatch
from rnnbook.book.timing import backend_timings
from rnnbook.checks import require_default_options
from rnnbook.numpy_ref import lstm


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



def test_numpy_row_is_timed_and_is_its_own_reference():
    table = backend_timings("lstm", 3, 4, 5, 2, repeats=1, backends=["numpy"], peepholes=True)
    (row,) = table.rows
    assert row["forward_ms"] > 0 and row["backward_ms"] > 0 and row["max_rel_diff"] == 0
    assert "peepholes=True" in table.title and "numpy" in str(table)


def test_a_backend_with_only_the_default_form_gets_a_note(monkeypatch):
    """A stand-in backend ("numba") that runs the LSTM but refuses its options, as the CuPy kernels do."""
    def forward(params, x, state0=None, **options):
        require_default_options(lstm, options, "numba")
        return lstm.forward(params, x, state0, **options)

    monkeypatch.delitem(dispatch._unavailable, "numba", raising=False)
    monkeypatch.setitem(dispatch._registry[("lstm", "forward")], "numba", forward)
    monkeypatch.setitem(dispatch._registry[("lstm", "backward")], "numba", lstm.backward)

    plain = backend_timings("lstm", 3, 4, 5, 2, repeats=1, backends=["numpy", "numba"], dtype=np.float64)
    assert plain.rows[1]["max_rel_diff"] < 1e-12 and "note" not in plain.rows[1]
    peep = backend_timings("lstm", 3, 4, 5, 2, repeats=1, backends=["numpy", "numba"], peepholes=True)
    assert peep.rows[0]["forward_ms"] > 0
    assert "forward_ms" not in peep.rows[1] and "only with its default options" in peep.rows[1]["note"]
    assert "only with its default options" in peep._repr_markdown_()


def test_a_backend_without_the_architecture_gets_a_note(monkeypatch):
    monkeypatch.delitem(dispatch._unavailable, "numba", raising=False)
    for op in ("forward", "backward"):                  # whatever the real numba backend has, here it has no GRU
        impls = {b: f for b, f in dispatch._registry[("gru", op)].items() if b != "numba"}
        monkeypatch.setitem(dispatch._registry, ("gru", op), impls)
    table = backend_timings("gru", 3, 4, 5, 2, repeats=1, backends=["numpy", "numba"])
    assert table.rows[1]["note"] == "no gru forward/backward on numba yet"
