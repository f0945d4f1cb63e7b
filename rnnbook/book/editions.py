r"""Solution regions in a chapter, and the student edition built from them.

A chapter marks the code a student is to write with two comment lines, inside a
code cell, at the indentation of the code they enclose::

    def rnn_step_backward(params, cache, dstate):
        """..."""                       # the signature and docstring stay
        # BEGIN SOLUTION 1.1
        x_t, h_prev, dphi_a = cache
        ...
        return dx_t, (dh_prev,), dparams
        # END SOLUTION

The student edition replaces each region by a stub at the same indentation::

        # Exercise 1.1: write your code here, in place of the `raise`.
        raise ImplementMe("1.1", "<the exercise's task, from the grader's registry>")

and drops every cell tagged ``solution`` (in the percent format:
``# %% tags=["solution"]`` or ``# %% [markdown] tags=["solution"]``), e.g. a
written answer.  Everything else is left as it is.  Rules, checked with clear
errors: markers stand alone on their line, regions do not nest and do not span
cells, a region is not empty, and every exercise id is registered with the grader
(``rnnbook.book.grading``), whose ``task`` text goes into the stub.
"""
from __future__ import annotations

import copy
import re
import textwrap
from dataclasses import dataclass
from pathlib import Path

BEGIN_RE = re.compile(r"^(?P<indent>[ \t]*)# BEGIN SOLUTION (?P<id>\d+\.\d+[a-z]?)[ \t]*$")
END_RE = re.compile(r"^(?P<indent>[ \t]*)# END SOLUTION[ \t]*$")
MARKER_WORDS = re.compile(r"\b(BEGIN|END)\s+SOLUTION\b")
STUB_RE = r"^(?P<indent>[ \t]*)raise ImplementMe\(\s*['\"]{id}['\"]"
STUB_COMMENT = "# Exercise {id}: write your code here, in place of the `raise`."
SOLUTION_TAG = "solution"
IMPORT_RE = re.compile(r"^\s*from\s+rnnbook\.book\s+import\s+[^\n]*\bImplementMe\b", re.M)


class MarkerError(ValueError):
    """A solution marker is malformed, unbalanced, nested, empty or unregistered."""


@dataclass
class Region:
    """One solution region: which exercise, where, and its code (dedented)."""
    exercise: str
    cell: int            # index of the code cell in the notebook
    line: int            # line of the BEGIN marker inside the cell (0-based)
    indent: str
    body: list           # the enclosed lines, with ``indent`` removed


def _where(source_name, cell, line):
    return f"{source_name}, cell {cell} line {line + 1}"


def find_regions(nb, source_name: str = "notebook") -> list[Region]:
    """Every solution region of ``nb`` in order; raises :class:`MarkerError` on a bad marker."""
    regions = []
    for ci, cell in enumerate(nb.cells):
        lines = cell.source.split("\n")
        if cell.cell_type != "code":
            for li, line in enumerate(lines):
                if MARKER_WORDS.search(line):
                    raise MarkerError(f"{_where(source_name, ci, li)}: solution markers belong in code cells; "
                                      f"tag a whole markdown cell 'solution' instead")
            continue
        open_region = None
        for li, line in enumerate(lines):
            begin, end = BEGIN_RE.match(line), END_RE.match(line)
            if begin:
                if open_region is not None:
                    raise MarkerError(f"{_where(source_name, ci, li)}: BEGIN SOLUTION {begin['id']} inside the "
                                      f"region of exercise {open_region.exercise} (regions do not nest)")
                open_region = Region(begin["id"], ci, li, begin["indent"], [])
            elif end:
                if open_region is None:
                    raise MarkerError(f"{_where(source_name, ci, li)}: END SOLUTION without a BEGIN SOLUTION")
                if end["indent"] != open_region.indent:
                    raise MarkerError(f"{_where(source_name, ci, li)}: END SOLUTION is indented differently "
                                      f"from its BEGIN SOLUTION {open_region.exercise}")
                if not any(b.strip() for b in open_region.body):
                    raise MarkerError(f"{_where(source_name, ci, open_region.line)}: the region of exercise "
                                      f"{open_region.exercise} is empty")
                regions.append(open_region)
                open_region = None
            elif MARKER_WORDS.search(line):
                raise MarkerError(f"{_where(source_name, ci, li)}: malformed marker {line.strip()!r}; write "
                                  f"'# BEGIN SOLUTION <chapter>.<number>' or '# END SOLUTION' alone on the line")
            elif open_region is not None:
                if line.strip() and not line.startswith(open_region.indent):
                    raise MarkerError(f"{_where(source_name, ci, li)}: a line of the region of exercise "
                                      f"{open_region.exercise} is indented less than its BEGIN marker")
                open_region.body.append(line[len(open_region.indent):] if line.strip() else "")
        if open_region is not None:
            raise MarkerError(f"{_where(source_name, ci, open_region.line)}: BEGIN SOLUTION "
                              f"{open_region.exercise} has no END SOLUTION in the same cell")
    return regions


def solutions(nb, source_name: str = "notebook") -> dict[str, list[list[str]]]:
    """``{exercise id: [region body lines, ...]}`` in the order the regions appear."""
    out: dict[str, list[list[str]]] = {}
    for r in find_regions(nb, source_name):
        out.setdefault(r.exercise, []).append(r.body)
    return out


def _tasks_for(ids, source_name):
    from . import grading
    registry = grading.registry()
    missing = sorted(set(ids) - set(registry))
    if missing:
        raise MarkerError(f"{source_name}: exercise(s) {missing} are marked but not registered with the grader; "
                          f"register them in rnnbook/book/exercises/ (see chapters/README.md)")
    return {i: registry[i].task for i in ids}


def student_notebook(nb, source_name: str = "notebook", tasks: dict | None = None):
    """A copy of ``nb`` with every region replaced by a stub and ``solution`` cells dropped."""
    regions = find_regions(nb, source_name)
    if tasks is None:
        tasks = _tasks_for({r.exercise for r in regions}, source_name)
    if regions and not any(IMPORT_RE.search(c.source) for c in nb.cells if c.cell_type == "code"):
        raise MarkerError(f"{source_name}: the chapter has exercises but never does "
                          f"`from rnnbook.book import ... ImplementMe`, so the stubs could not raise it")
    out = copy.deepcopy(nb)
    by_cell: dict[int, list[Region]] = {}
    for r in regions:
        by_cell.setdefault(r.cell, []).append(r)
    for ci, cell_regions in by_cell.items():
        lines = out.cells[ci].source.split("\n")
        for r in reversed(cell_regions):          # from the bottom, so earlier line numbers stay valid
            end = r.line + len(r.body) + 1
            task = tasks.get(r.exercise, "")
            stub = [r.indent + STUB_COMMENT.format(id=r.exercise),
                    r.indent + f"raise ImplementMe({r.exercise!r}, {task!r})"]
            lines[r.line:end + 1] = stub
        out.cells[ci].source = "\n".join(lines)
    out.cells = [c for c in out.cells if SOLUTION_TAG not in c.get("metadata", {}).get("tags", [])]
    return out


def paste_solutions(student_nb, answers: dict[str, list], source_name: str = "student notebook"):
    """Put code back in place of the stubs: ``answers[id]`` is a list of region bodies (lists of
    lines, or strings), one per stub of that exercise, in order.  Returns a new notebook."""
    out = copy.deepcopy(student_nb)
    used = {k: 0 for k in answers}
    for cell in out.cells:
        if cell.cell_type != "code":
            continue
        for ex_id, bodies in answers.items():
            pattern = re.compile(STUB_RE.format(id=re.escape(ex_id)))
            lines = cell.source.split("\n")
            i = 0
            while i < len(lines):
                m = pattern.match(lines[i])
                if not m:
                    i += 1
                    continue
                if used[ex_id] >= len(bodies):
                    raise MarkerError(f"{source_name}: more stubs of exercise {ex_id} than answers given")
                body = bodies[used[ex_id]]
                body = body.split("\n") if isinstance(body, str) else list(body)
                used[ex_id] += 1
                start = i - 1 if i > 0 and lines[i - 1].strip() == STUB_COMMENT.format(id=ex_id) else i
                new = [(m["indent"] + b) if b.strip() else "" for b in body]
                lines[start:i + 1] = new
                i = start + len(new)
            cell.source = "\n".join(lines)
    unused = {k: len(v) - used[k] for k, v in answers.items() if used[k] != len(v)}
    if unused:
        raise MarkerError(f"{source_name}: no stub left for exercise(s) {sorted(unused)}")
    return out


def dedent_answer(code: str) -> list[str]:
    """A multi-line string (e.g. a triple-quoted answer in a test) as region body lines."""
    return textwrap.dedent(code).strip("\n").split("\n")


def build_student(chapter: Path, out_dir: Path, fmt: str = "ipynb") -> Path:
    """Write the student edition of ``chapter`` to ``out_dir`` as ``.ipynb`` or percent ``.py``."""
    from . import notebooks
    chapter = Path(chapter)
    nb = notebooks.read(chapter)
    student = student_notebook(nb, source_name=str(chapter))
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    return notebooks.write(student, out_dir / chapter.stem, fmt)
