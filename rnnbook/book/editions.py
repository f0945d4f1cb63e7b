r"""Solution regions in a chapter, and the student edition built from them.

A chapter marks the code a student is to write with two comment lines, inside a
code cell, at the indentation of the code they enclose::

    def rnn_step_backward(params, cache, dstate):
        '''the docstring'''             # the signature and docstring stay
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

import ast
import copy
import json
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


def _literal(text: str) -> str:
    return json.dumps(text, ensure_ascii=False)        # a valid Python string literal, in double quotes


def stub_lines(exercise: str, task: str, indent: str, width: int = 96) -> list[str]:
    """The stub that replaces a region: a comment and ``raise ImplementMe(id, task)``, wrapped."""
    head = f"{indent}raise ImplementMe({_literal(exercise)}, "
    pieces = textwrap.wrap(task, max(width - len(head), 30), drop_whitespace=False) or [""]
    lines = [head + _literal(pieces[0])]
    lines += [" " * len(head) + _literal(piece) for piece in pieces[1:]]
    lines[-1] += ")"
    return [indent + STUB_COMMENT.format(id=exercise)] + lines


def _statement_end(lines: list[str], start: int) -> int:
    """Index of the last line of the (possibly multi-line) statement starting at ``lines[start]``."""
    for end in range(start, len(lines)):
        try:
            ast.parse(textwrap.dedent("\n".join(lines[start:end + 1])))
            return end
        except SyntaxError:
            continue
    return start


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
            lines[r.line:end + 1] = stub_lines(r.exercise, tasks.get(r.exercise, ""), r.indent)
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
                lines[start:_statement_end(lines, i) + 1] = new
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


# --------------------------------------------------------------------------- conventions
EXERCISE_HEADING = re.compile(r"^#+\s.*\bExercise\s+(\d+\.\d+[a-z]?)\b", re.M)


def lint_chapter(path) -> list[str]:
    """Every way ``path`` breaks the chapter conventions of ``chapters/README.md`` (empty: none)."""
    from . import grading, notebooks
    path = Path(path)
    problems = []
    m = notebooks.CHAPTER_RE.match(path.name)
    if not m:
        return [f"{path.name}: a chapter is named NN_slug.py (two digits, lower-case slug)"]
    number = int(m["number"])
    text = path.read_text(encoding="utf-8")
    if not re.search(r"^# %%", text, re.M):
        problems.append("not in jupytext's percent format (no '# %%' cells)")
    try:
        nb = notebooks.read(path)
    except notebooks.ChapterError as exc:
        return problems + [str(exc)]
    if nb.metadata.get("kernelspec", {}).get("name") != notebooks.KERNEL:
        problems.append("the header has no python3 kernelspec (copy the header of an existing chapter)")
    first = nb.cells[0] if nb.cells else None
    if first is None or first.cell_type != "markdown" or not re.match(rf"#\s+Chapter {number}\b", first.source):
        problems.append(f"the first cell must be markdown starting with '# Chapter {number} ...'")
    code = "\n".join(c.source for c in nb.cells if c.cell_type == "code")
    markdown = "\n".join(c.source for c in nb.cells if c.cell_type == "markdown")
    try:
        regions = find_regions(nb, path.name)
    except MarkerError as exc:
        return problems + [str(exc)]
    marked = {r.exercise for r in regions}
    registered = {i for i, e in grading.registry().items() if e.chapter == number}
    for i in sorted(marked - registered):
        problems.append(f"exercise {i} is marked but not registered with the grader (rnnbook/book/exercises/)")
    for i in sorted(registered - marked):
        problems.append(f"exercise {i} is registered but the chapter has no '# BEGIN SOLUTION {i}' region")
    for i in sorted(marked):
        if not i.startswith(f"{number}."):
            problems.append(f"exercise {i} belongs to another chapter (ids are '{number}.k' here)")
        if not re.search(rf"check\(\s*['\"]{re.escape(i)}['\"]", code):
            problems.append(f"exercise {i} has no check({i!r}, ...) cell after it")
    headings = set(EXERCISE_HEADING.findall(markdown))
    if len(headings) < 2:
        problems.append(f"a chapter has at least two exercises ('### Exercise {number}.1' headings); found "
                        f"{sorted(headings) or 'none'}")
    for i in sorted(marked - headings):
        problems.append(f"exercise {i} has no 'Exercise {i}' heading in the text")
    if marked:
        try:
            student_notebook(nb, path.name)
        except MarkerError as exc:
            problems.append(str(exc))
    for needle, why in (("pick(", "choose its sizes with rnnbook.book.pick(full=..., small=...)"),
                        ("gradcheck", "have a gradient check (rnnbook.gradcheck)"),
                        ("backend_timings(", "end with the backend swap (rnnbook.book.timing.backend_timings)")):
        if needle not in code:
            problems.append(f"a chapter must {why}")
    return problems
