"""The README never lies: its test command is what CI runs, its tour runs, its table is current."""
import re
from pathlib import Path

import pytest

import rnnbook as rb

ROOT = Path(__file__).resolve().parents[1]
README = (ROOT / "README.md").read_text()


def _bash_blocks():
    return re.findall(r"```bash\n(.*?)```", README, re.S)


def test_ci_runs_the_readme_test_command():
    test_cmd = [b.strip() for b in _bash_blocks() if "pytest" in b]
    assert len(test_cmd) == 1
    ci = (ROOT / ".ci" / "run").read_text()
    assert test_cmd[0] in ci.splitlines()


def test_main_job_command_runs_the_demo():
    main = [b.strip() for b in _bash_blocks() if "rnnbook demo" in b]
    assert len(main) == 1 and main[0].startswith("python3.11 -m venv .venv")


def test_tour_runs():
    tour = re.search(r"```python\n(.*?)```", README, re.S).group(1)
    exec(compile(tour, "README tour", "exec"), {})


def test_numba_page_example_runs():
    """docs/numba.md's example (a loop of your own under ``rb.host_blas``) runs as written."""
    if "numba" not in rb.available_backends():
        pytest.skip("the Numba backend cannot run here")
    blocks = re.findall(r"```python\n(.*?)```", (ROOT / "docs" / "numba.md").read_text(), re.S)
    assert blocks
    for k, block in enumerate(blocks):
        scope = {}
        exec(compile(block, f"docs/numba.md example {k}", "exec"), scope)
    assert scope["logits"].shape == (50, 4, 65)


def test_coverage_table_is_current():
    if "cupy" in rb.available_backends():
        pytest.skip("the README's table is the one printed on a machine without a GPU")
    table = re.search(r"<!-- coverage-table -->\n(.*?)\n<!-- /coverage-table -->", README, re.S).group(1)
    assert table.strip() == rb.coverage_table().strip(), "update the README's table from `python -m rnnbook coverage`"
