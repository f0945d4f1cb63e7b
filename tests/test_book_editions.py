"""The chapter format: the SMALL switch, solution regions, the student edition, the conventions."""
import textwrap

import nbformat
import pytest

from rnnbook.book import ImplementMe, small_from_env
from rnnbook.book import editions, notebooks
from rnnbook.book.editions import MarkerError

CHAPTERS = notebooks.list_chapters(notebooks.package_root() / "chapters")
TASKS = {"9.1": "write f", "9.2": "write g"}


def nb_of(*cells):
    """A notebook from ("code"|"markdown", source[, tags]) tuples."""
    nb = nbformat.v4.new_notebook()
    for kind, src, *tags in cells:
        cell = (nbformat.v4.new_code_cell if kind == "code" else nbformat.v4.new_markdown_cell)(textwrap.dedent(src))
        if tags:
            cell.metadata["tags"] = tags[0]
        nb.cells.append(cell)
    return nb


IMPORT = ("code", "from rnnbook.book import ImplementMe\n")
F = ("code", """\
def f(x):
    '''Double x.'''
    y = x
    # BEGIN SOLUTION 9.1
    y = 2 * x
    if y > 10:
        y = 10
    # END SOLUTION
    return y
""")


def test_small_switch_reads_the_environment():
    assert small_from_env({"RNNBOOK_SMALL": "1"}) and small_from_env({"RNNBOOK_SMALL": " Yes "})
    assert not small_from_env({}) and not small_from_env({"RNNBOOK_SMALL": "0"})
    with pytest.raises(ValueError, match="RNNBOOK_SMALL='maybe'"):
        small_from_env({"RNNBOOK_SMALL": "maybe"})


def test_implement_me_names_the_exercise_and_the_task():
    msg = str(ImplementMe("1.1", "compute da"))
    assert "Exercise 1.1 is not implemented yet: compute da" in msg and "book grade" in msg
    assert isinstance(ImplementMe("1.1"), NotImplementedError)


def test_region_becomes_an_indented_stub_and_the_rest_is_kept():
    nb = nb_of(IMPORT, F, ("markdown", "Some *prose*."))
    student = editions.student_notebook(nb, tasks=TASKS)
    src = student.cells[1].source
    assert "y = 2 * x" not in src and "SOLUTION" not in src
    assert "    raise ImplementMe(\"9.1\", \"write f\")" in src.split("\n")
    assert src.startswith("def f(x):\n    '''Double x.'''\n    y = x\n") and src.rstrip().endswith("return y")
    assert student.cells[2].source == "Some *prose*." and student.cells[0].source == nb.cells[0].source
    ns = {}
    exec(student.cells[0].source + src, ns)
    with pytest.raises(ImplementMe, match="Exercise 9.1 is not implemented yet: write f"):
        ns["f"](3)
    # the original is untouched
    assert "y = 2 * x" in nb.cells[1].source


def test_solution_tagged_cells_are_dropped():
    nb = nb_of(IMPORT, F, ("markdown", "**Answer.** 42", ["solution"]), ("code", "print(1)", ["solution", "x"]),
               ("markdown", "kept"))
    student = editions.student_notebook(nb, tasks=TASKS)
    assert [c.source for c in student.cells[2:]] == ["kept"]


def test_pasting_the_solutions_back_restores_the_code():
    two = ("code", """\
    class K:
        def g(self):
            # BEGIN SOLUTION 9.2
            return 1
            # END SOLUTION

        def h(self):
            # BEGIN SOLUTION 9.2
            return 2
            # END SOLUTION
    """)
    nb = nb_of(IMPORT, F, two)
    student = editions.student_notebook(nb, tasks={"9.1": "a long task " * 12, "9.2": "g and h"})
    assert student.cells[1].source.count("raise ImplementMe") == 1 and len(student.cells[1].source.split("\n")) > 8
    back = editions.paste_solutions(student, editions.solutions(nb))
    for orig, new in zip(nb.cells, back.cells):
        kept = "\n".join(line for line in orig.source.split("\n") if "SOLUTION" not in line)
        assert new.source == kept
    ns = {}
    for c in back.cells:
        exec(c.source, ns)
    assert ns["f"](3) == 6 and ns["f"](30) == 10 and ns["K"]().g() == 1 and ns["K"]().h() == 2
    with pytest.raises(MarkerError, match="no stub left for exercise"):
        editions.paste_solutions(back, {"9.1": [["return 0"]]})


@pytest.mark.parametrize("source, message", [
    ("# BEGIN SOLUTION 9.1\nx = 1\n# BEGIN SOLUTION 9.2\n# END SOLUTION\n", "do not nest"),
    ("x = 1\n# END SOLUTION\n", "END SOLUTION without a BEGIN"),
    ("# BEGIN SOLUTION 9.1\nx = 1\n", "has no END SOLUTION in the same cell"),
    ("# BEGIN SOLUTION 9.1\n\n# END SOLUTION\n", "is empty"),
    ("# BEGIN SOLUTION exercise-one\nx = 1\n# END SOLUTION\n", "malformed marker"),
    ("def f():\n    # BEGIN SOLUTION 9.1\n    x = 1\ny = 2\n    # END SOLUTION\n", "indented less than"),
    ("def f():\n    # BEGIN SOLUTION 9.1\n    x = 1\n# END SOLUTION\n", "indented differently"),
])
def test_bad_markers_are_reported_with_their_place(source, message):
    with pytest.raises(MarkerError, match=message) as info:
        editions.find_regions(nb_of(("markdown", "t"), ("code", source)), "ch.py")
    assert "ch.py, cell 1 line" in str(info.value)


def test_markers_in_markdown_unregistered_ids_and_a_missing_import_are_errors():
    with pytest.raises(MarkerError, match="belong in code cells"):
        editions.find_regions(nb_of(("markdown", "# BEGIN SOLUTION 9.1")))
    with pytest.raises(MarkerError, match=r"exercise\(s\) \['9.1'\] are marked but not registered"):
        editions.student_notebook(nb_of(IMPORT, F))
    with pytest.raises(MarkerError, match="never does `from rnnbook.book import ... ImplementMe`"):
        editions.student_notebook(nb_of(F), tasks=TASKS)


@pytest.mark.parametrize("chapter", CHAPTERS, ids=[c.stem for c in CHAPTERS])
def test_chapter_follows_the_conventions(chapter):
    assert editions.lint_chapter(chapter) == []


@pytest.mark.parametrize("chapter", CHAPTERS, ids=[c.stem for c in CHAPTERS])
def test_student_edition_of_each_chapter(chapter, tmp_path):
    full = notebooks.read(chapter)
    regions = editions.find_regions(full)
    out = editions.build_student(chapter, tmp_path, "ipynb")
    student = nbformat.read(str(out), as_version=4)
    nbformat.validate(student)
    text = "\n".join(c.source for c in student.cells)
    assert "SOLUTION" not in text
    for r in regions:                                   # each solution is gone, a stub stands in its place
        body = [line.strip() for line in r.body if len(line.strip()) > 25]
        assert not any(line in text for line in body), f"solution of {r.exercise} leaked"
        assert f'raise ImplementMe("{r.exercise}"' in text
    tagged = sum("solution" in c.metadata.get("tags", []) for c in full.cells)
    assert len(student.cells) == len(full.cells) - tagged
    py = editions.build_student(chapter, tmp_path, "py")
    assert notebooks.read(py).cells[0].source == full.cells[0].source


def test_lint_reports_what_a_chapter_lacks(tmp_path):
    bad = tmp_path / "07_draft.py"
    bad.write_text("# %% [markdown]\n# # A draft\n\n# %%\nx = 1\n")
    problems = "\n".join(editions.lint_chapter(bad))
    for expected in ("python3 kernelspec", "'# Chapter 7", "at least two exercises", "pick(", "gradcheck",
                     "backend_timings"):
        assert expected in problems
    assert "NN_slug.py" in editions.lint_chapter(tmp_path / "draft.py")[0]


def test_chapters_resolve_by_number_and_name():
    d = notebooks.package_root() / "chapters"
    assert notebooks.resolve("1", d).name == "01_elman.py" == notebooks.resolve("01_elman", d).name
    assert notebooks.chapter_number("04_gru_alice.ipynb") == 4 and notebooks.chapter_number("gru.ipynb") is None
    with pytest.raises(notebooks.ChapterError, match="no chapter '99'"):
        notebooks.resolve("99", d)
