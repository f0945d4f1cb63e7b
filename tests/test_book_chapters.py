"""Every chapter runs top to bottom in a fresh python3 kernel at the small size (RNNBOOK_SMALL=1),
and so does its student edition, whose unimplemented exercises only print a notice."""
import subprocess
import sys

import nbformat
import pytest

from rnnbook.book import editions, notebooks

CHAPTERS = notebooks.list_chapters(notebooks.package_root() / "chapters")
IDS = [c.stem for c in CHAPTERS]


def outputs_text(nb) -> str:
    return "\n".join(o.get("text", "") for c in nb.cells if c.cell_type == "code" for o in c.get("outputs", [])
                     if o.get("output_type") == "stream")


def test_there_are_chapters():
    assert {"01_elman.py", "04_gru.py"} <= {c.name for c in CHAPTERS}


@pytest.mark.parametrize("chapter", CHAPTERS, ids=IDS)
def test_chapter_runs_at_small_size(chapter):
    nb = notebooks.execute(chapter, small=True, timeout=300)
    assert notebooks.errors(nb) == []
    text = outputs_text(nb)
    assert "small size: True" in text                     # the kernel saw RNNBOOK_SMALL=1
    for r in editions.find_regions(notebooks.read(chapter)):
        assert f"Exercise {r.exercise} · " in text and "PASS" in text   # the chapter's own check cells ran
    images = sum(o.get("output_type") == "display_data" and "image/png" in o.get("data", {})
                 for c in nb.cells if c.cell_type == "code" for o in c.get("outputs", []))
    assert images >= 2, "a chapter shows its figures"
    print(f"{chapter.name}: {nb.metadata['rnnbook']['seconds']} s")


@pytest.mark.parametrize("chapter", CHAPTERS, ids=IDS)
def test_student_edition_runs_to_the_end(chapter):
    student = editions.student_notebook(notebooks.read(chapter), chapter.name)
    nb = notebooks.execute(student, small=True, timeout=300, name=f"student edition of {chapter.name}")
    assert notebooks.errors(nb) == []
    text = outputs_text(nb)
    for r in editions.find_regions(notebooks.read(chapter)):
        assert f"Exercise {r.exercise} is not implemented yet" in text


def test_a_failing_cell_fails_the_run_and_names_the_chapter():
    nb = nbformat.v4.new_notebook()
    nb.cells = [nbformat.v4.new_code_cell("x = 1"), nbformat.v4.new_code_cell("raise ValueError('broken cell')")]
    with pytest.raises(notebooks.ChapterError, match=r"99_broken.py failed at small size(.|\n)*broken cell"):
        notebooks.execute(nb, name="99_broken.py")


def test_build_command_writes_valid_notebooks(tmp_path):
    out = subprocess.run([sys.executable, "-m", "rnnbook", "book", "build", "--out", str(tmp_path),
                          "--chapters-dir", str(notebooks.package_root() / "chapters")],
                         capture_output=True, text=True, check=True)
    for chapter in CHAPTERS:
        path = tmp_path / f"{chapter.stem}.ipynb"
        assert f"wrote {path}" in out.stdout
        nb = nbformat.read(str(path), as_version=4)
        nbformat.validate(nb)
        assert nb.metadata["kernelspec"]["name"] == "python3" and "jupytext" not in nb.metadata
        assert [c.source for c in nb.cells] == [c.source for c in notebooks.read(chapter).cells]
