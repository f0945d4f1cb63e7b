r"""The exercise registry and the grader.

An exercise is registered once, with the function a student writes and a
*checker* that probes that function and reports, term by term, what is right and
what is wrong::

    from rnnbook.book.grading import exercise

    @exercise("4.1", function="gru_step_backward", title="Backward of one GRU step",
              task="return (dx_t, (dh_prev,), dparams) for one step of the GRU")
    def _check(probe):
        got = probe.call(params, cache, (dh,))          # the student's function
        probe.compare("W_ih[z]", got[2]["W_ih"][H:2*H], want["W_ih"][H:2*H],
                      label="dW_ih rows 5..9", group="update gate z", hint="dW_iz = da_zᵀ x_t")
        probe.explain("da_z: check dz = dh ⊙ (h_prev − n)", {"W_ih[z]", "W_hh[z]", ...})

``compare`` recognises the usual slips by themselves (wrong sign, a constant
factor, a transpose, a missing batch sum, all zeros, a known wrong formula given
as ``alternatives``); ``explain`` declares which terms an error in one
intermediate quantity would spoil, so that the grader can name the quantity
whose downstream terms are exactly the wrong ones.  Checkers live in
``rnnbook/book/exercises/`` (one module per chapter, found automatically).

The grader (``python -m rnnbook book grade FILE``) reads a student's ``.ipynb`` or
``.py``, executes only its imports, function and class definitions and constant
assignments (or, with ``execute=True``, the whole notebook in a kernel at the
small size) and runs the checker of every exercise whose function it defines.
"""
from __future__ import annotations

import ast
import contextlib
import copy
import importlib
import json
import linecache
import pkgutil
import re
import signal
import sys
import threading
import time
import traceback
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Callable

import numpy as np

from . import ImplementMe

TOL = 1e-7                   # relative tolerance against the float64 reference
TINY = 1e-12


class ExerciseFailed(AssertionError):
    """Raised by ``rnnbook.book.check`` when an answer is wrong (the message is the diagnosis)."""


class StudentCrash(Exception):
    """The student's function raised (anything but ``ImplementMe``)."""


class BadAnswer(Exception):
    """The student's function returned something of the wrong form; the message says what was expected."""


# --------------------------------------------------------------------------- registry
@dataclass(frozen=True)
class Exercise:
    id: str                  # "4.1": chapter 4, exercise 1 (as printed in the chapter)
    function: str            # the name of the function the student writes
    title: str
    task: str                # one line: what to write (goes into the student edition's stub)
    checker: Callable = field(repr=False, compare=False)
    timeout: float = 60.0    # seconds the checker may take

    @property
    def chapter(self) -> int:
        return int(self.id.split(".")[0])


_REGISTRY: dict[str, Exercise] = {}
_ID_RE = re.compile(r"^\d+\.\d+[a-z]?$")


def exercise(id: str, function: str, title: str, task: str, timeout: float = 60.0):
    """Decorator: register ``checker(probe)`` as the grader of exercise ``id``."""
    if not isinstance(id, str) or not _ID_RE.match(id):
        raise ValueError(f"exercise id must look like '4.1' (chapter.number), got {id!r}")
    if not function.isidentifier():
        raise ValueError(f"function must be a Python identifier, got {function!r}")

    def register(checker):
        old = _REGISTRY.get(id)
        if old is not None and old.checker.__module__ != checker.__module__:
            raise ValueError(f"exercise {id} is registered twice ({old.checker.__module__} and {checker.__module__})")
        _REGISTRY[id] = Exercise(id, function, title, task, checker, timeout)
        return checker
    return register


def registry() -> dict[str, Exercise]:
    """Every registered exercise (the modules of ``rnnbook.book.exercises`` are imported first)."""
    from . import exercises
    for info in pkgutil.iter_modules(exercises.__path__):
        importlib.import_module(f"{exercises.__name__}.{info.name}")

    def order(item):
        chapter, number, suffix = re.match(r"^(\d+)\.(\d+)([a-z]?)$", item[0]).groups()
        return int(chapter), int(number), suffix
    return dict(sorted(_REGISTRY.items(), key=order))


def get(exercise_id: str) -> Exercise:
    reg = registry()
    if exercise_id not in reg:
        raise KeyError(f"no exercise {exercise_id!r}; registered: {sorted(reg)}")
    return reg[exercise_id]


# --------------------------------------------------------------------------- findings
@dataclass
class Finding:
    term: str                # key used for localisation, e.g. "W_ih[z]"
    ok: bool
    label: str = ""          # what the student reads, e.g. "dW_ih rows 5..9"
    detail: str = ""         # what is wrong, e.g. "has the wrong sign"
    hint: str = ""           # the formula to check
    group: str = ""          # e.g. "update gate z"
    localise: bool = True    # take part in naming the faulty quantity
    error: float = float("nan")


def relative_error(got, want) -> float:
    """``max|got − want| / max(max|want|, tiny)``: one number per array."""
    got = np.asarray(got, np.float64)
    want = np.asarray(want, np.float64)
    return float(np.max(np.abs(got - want), initial=0.0) / max(float(np.max(np.abs(want), initial=0.0)), TINY))


def _close(got, want, tol=TOL) -> bool:
    return np.shape(got) == np.shape(want) and relative_error(got, want) <= tol


def _fmt_index(idx) -> str:
    return "[" + ", ".join(str(int(i)) for i in idx) + "]"


def describe_difference(got, want, alternatives=None, tol=TOL) -> str:
    """Say how ``got`` differs from ``want`` (same shape): sign, factor, transpose, a known slip, where."""
    err = relative_error(got, want)
    scale = float(np.max(np.abs(want), initial=0.0))
    if scale <= TINY:
        return f"should be zero but is not (largest entry {float(np.max(np.abs(got))):.3g})"
    if not np.any(got):
        return "is zero everywhere: this term is missing"
    for label, alt in (alternatives or {}).items():
        if alt is not None and _close(got, alt, tol):
            return f"equals {label}"
    if _close(got, -want, tol):
        return "has the wrong sign (yours = −1 × the right value)"
    if want.ndim == 2 and want.shape[0] == want.shape[1] and _close(got, want.T, tol):
        return "is the transpose of the right value"
    c = float(np.vdot(got, want) / np.vdot(want, want))
    if abs(c) > TINY and _close(got, c * want, tol):
        return f"is {c:.4g} × the right value"
    wrong = np.abs(got - want) > tol * scale
    idx = np.unravel_index(int(np.argmax(np.abs(got - want))), want.shape)
    where = f"worst at {_fmt_index(idx)}: yours {got[idx]:.6g}, expected {want[idx]:.6g}" if want.ndim else \
        f"yours {float(got):.6g}, expected {float(want):.6g}"
    part = f"wrong in {int(wrong.sum())} of {wrong.size} entries, " if 0 < wrong.sum() < wrong.size else ""
    return f"{part}{where} (rel err {err:.2g})"


def describe_shape(got, want) -> str:
    g, w = tuple(got.shape), tuple(want.shape)
    msg = f"has shape {g}, expected {w}"
    if got.ndim == 2 and g == w[::-1]:
        msg += (": it is transposed" + (" (its transpose is right)" if _close(got.T, want) else "")
                + "; a gradient has the shape of what it differentiates")
    elif got.ndim == want.ndim + 1 and g[1:] == w:
        msg += ": sum over the batch (axis 0), as every row of the batch uses the same parameter"
    elif got.size == want.size:
        msg += ": the right number of entries in the wrong layout"
    return msg


class Probe:
    """What a checker works with: calls the student's function and records findings."""

    def __init__(self, function: Callable):
        self.function = function
        self.findings: list[Finding] = []
        self.hypotheses: list[tuple[str, frozenset]] = []

    # ---------------------------------------------------------------- calling
    def call(self, *args, copy_args: bool = True, **kwargs):
        """Call the student's function, on deep copies of the arguments unless ``copy_args=False``
        (so that it cannot spoil the reference's arrays)."""
        if copy_args:
            args, kwargs = copy.deepcopy(args), copy.deepcopy(kwargs)
        try:
            return self.function(*args, **kwargs)
        except ImplementMe:
            raise
        except Exception as exc:
            raise StudentCrash(exc) from exc

    # ---------------------------------------------------------------- recording
    def expect(self, term: str, ok: bool, detail: str = "", label: str = "", group: str = "", hint: str = "",
               localise: bool = True) -> Finding:
        """Record a yes/no check (for answers that are not compared array to array)."""
        f = Finding(term, bool(ok), label or term, "" if ok else detail, hint, group, localise)
        self.findings.append(f)
        return f

    def compare(self, term: str, got, want, label: str = "", group: str = "", hint: str = "",
                alternatives: dict | None = None, localise: bool = True, tol: float = TOL) -> Finding:
        """Compare one array of the student's answer with the reference and say how it differs."""
        want = np.asarray(want, np.float64)
        f = Finding(term, False, label or term, "", hint, group, localise)
        self.findings.append(f)
        if got is None:
            f.detail = "is missing (None)"
            return f
        try:
            got = np.asarray(got, np.float64)
        except (TypeError, ValueError):
            f.detail = f"is not an array of numbers (got {type(got).__name__})"
            return f
        if got.shape != want.shape:
            f.detail = describe_shape(got, want)
            return f
        if not np.all(np.isfinite(got)):
            f.detail = "contains NaN or inf"
            return f
        f.error = relative_error(got, want)
        f.ok = f.error <= tol
        if not f.ok:
            f.detail = describe_difference(got, want, alternatives, tol)
        return f

    def explain(self, cause: str, terms) -> None:
        """An error in ``cause`` (an intermediate quantity, with the formula to check) spoils exactly ``terms``."""
        self.hypotheses.append((cause, frozenset(terms)))

    # ---------------------------------------------------------------- conclusions
    def diagnosis(self) -> list[str]:
        """Name the quantity (or formula) whose error explains exactly the wrong terms."""
        failing = {f.term for f in self.findings if not f.ok and f.localise}
        if not failing:
            return []
        exact = [c for c, t in self.hypotheses if t == failing]
        if exact:
            return ["The wrong terms are exactly the ones that depend on one quantity, so the error is there:"] + \
                   [f"  check {c}" for c in dict.fromkeys(exact)]
        by_hint: dict[str, set] = {}                   # terms computed by one formula (its hint)
        for f in self.findings:
            if f.hint and f.localise:
                by_hint.setdefault(f.hint, set()).add(f.term)
        formulas = [(h, frozenset(t)) for h, t in by_hint.items()]
        exact = [h for h, t in formulas if t == failing]
        if exact:
            wrong = [f for f in self.findings if f.term in failing]
            labels = list(dict.fromkeys(f.label for f in wrong))
            what = ", ".join(labels)
            if len(labels) < len(wrong):
                what += " (" + ", ".join(dict.fromkeys(f.group for f in wrong if f.group)) + ")"
            return [f"Only {what} {'is' if len(wrong) == 1 else 'are'} wrong: check {exact[0]}"]
        hyps = self.hypotheses + formulas
        for i, (c1, t1) in enumerate(hyps):
            for c2, t2 in hyps[i + 1:]:
                if t1 | t2 == failing and not t1 <= t2 and not t2 <= t1:
                    return ["The wrong terms are explained by two separate errors:", f"  check {c1}",
                            f"  and check {c2}"]
        return ["Several terms are wrong and no single quantity explains them all; fix them one at a time, "
                "starting from the first one listed below."]


# --------------------------------------------------------------------------- grades
@dataclass
class Grade:
    exercise: str
    function: str
    title: str
    status: str                       # pass | fail | not implemented | error | missing
    findings: list = field(default_factory=list)
    diagnosis: list = field(default_factory=list)
    message: str = ""
    seconds: float = 0.0

    @property
    def passed(self) -> bool:
        return self.status == "pass"

    def wrong(self) -> list[Finding]:
        return [f for f in self.findings if not f.ok]

    def render(self) -> str:
        head = f"Exercise {self.exercise} · {self.function}() — {self.title}"
        n_bad, n = len(self.wrong()), len(self.findings)
        lines = [head]
        if self.status == "pass":
            lines.append(f"  PASS: all {n} checks right")
        elif self.status == "fail":
            lines.append(f"  FAIL: {n_bad} of {n} checks wrong")
        else:
            lines.append(f"  {self.status.upper()}: {self.message}")
        lines += ["  " + d for d in self.diagnosis]
        groups: dict[str, list[Finding]] = {}
        for f in self.findings:
            groups.setdefault(f.group or "", []).append(f)
        width = max([len(g) for g in groups] + [8])
        for g, fs in groups.items():
            bad = [f for f in fs if not f.ok]
            name = (g or "checks").ljust(width)
            if not bad:
                lines.append(f"  {name}  ok     ({len(fs)} check{'s' * (len(fs) != 1)}: "
                             f"{', '.join(f.label for f in fs)})")
                continue
            if all(not f.localise for f in fs) and len(bad) > 1:     # a summary group: one line
                lines.append(f"  {name}  WRONG  {', '.join(f.label for f in bad)} "
                             f"(first: {bad[0].label} {bad[0].detail})")
                continue
            first = True
            for f in bad:
                hint = f"   [check: {f.hint}]" if f.hint else ""
                lines.append(f"  {name if first else ' ' * width}  WRONG  {f.label}: {f.detail}{hint}")
                first = False
            good = [f.label for f in fs if f.ok]
            if good:
                lines.append(f"  {' ' * width}  ok     {', '.join(good)}")
        return "\n".join(lines)

    __str__ = render

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict) -> "Grade":
        d = dict(d)
        d["findings"] = [Finding(**f) for f in d.get("findings", [])]
        return cls(**d)


@contextlib.contextmanager
def _time_limit(seconds: float):
    """Stop a runaway answer (an endless loop) after ``seconds`` (Unix main thread; otherwise no limit)."""
    usable = hasattr(signal, "SIGALRM") and seconds and threading.current_thread() is threading.main_thread()
    if not usable:
        yield
        return

    def on_alarm(signum, frame):
        raise TimeoutError(f"did not finish within {seconds:g} s (an endless loop?)")
    old = signal.signal(signal.SIGALRM, on_alarm)
    signal.setitimer(signal.ITIMER_REAL, seconds)
    try:
        yield
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, old)


def _student_frame(exc: BaseException, function: Callable) -> str:
    """``line N: <source>`` of the last traceback frame inside the student's code."""
    filename = getattr(getattr(function, "__code__", None), "co_filename", None)
    frames = [fr for fr in traceback.extract_tb(exc.__traceback__) if fr.filename == filename]
    if not frames:
        return ""
    fr = frames[-1]
    return f" (in {fr.name}, line {fr.lineno}: {(fr.line or '').strip()})"


def grade_function(exercise_id: str, function: Callable) -> Grade:
    """Run exercise ``exercise_id``'s checker on ``function``."""
    ex = get(exercise_id)
    if not callable(function):
        raise TypeError(f"exercise {exercise_id}: expected the function {ex.function}, got {type(function).__name__}")
    probe = Probe(function)
    grade = Grade(ex.id, ex.function, ex.title, "fail")
    start = time.perf_counter()
    try:
        with _time_limit(ex.timeout):
            ex.checker(probe)
    except ImplementMe as exc:
        grade.status, grade.message = "not implemented", str(exc).split("\n")[0]
    except StudentCrash as crash:
        exc = crash.__cause__
        grade.status = "error"
        grade.message = (f"your function raised {type(exc).__name__}: {exc}{_student_frame(exc, function)}"
                         + (f"; {len(probe.findings)} checks had run before" if probe.findings else ""))
    except BadAnswer as exc:
        grade.status, grade.message = "error", str(exc)
    except TimeoutError as exc:
        grade.status, grade.message = "error", str(exc)
    else:
        grade.status = "pass" if all(f.ok for f in probe.findings) else "fail"
        if not probe.findings:
            raise RuntimeError(f"the checker of exercise {ex.id} recorded no finding")
    grade.findings = probe.findings
    if grade.status == "fail":
        grade.diagnosis = probe.diagnosis()
    grade.seconds = round(time.perf_counter() - start, 3)
    return grade


# --------------------------------------------------------------------------- student files
_MAGIC_RE = re.compile(r"^\s*[%!]")


def _keep(node) -> bool:
    """Imports, definitions and assignments of literal constants: what defining the answers needs."""
    if isinstance(node, (ast.Import, ast.ImportFrom, ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
        return True
    if isinstance(node, (ast.Assign, ast.AnnAssign)) and node.value is not None:
        targets = node.targets if isinstance(node, ast.Assign) else [node.target]
        names = [t for target in targets for t in (target.elts if isinstance(target, ast.Tuple) else [target])]
        if not all(isinstance(t, ast.Name) for t in names):      # x[0] = 1 needs x: not a definition
            return False
        try:
            ast.literal_eval(node.value)
            return True
        except (ValueError, TypeError, SyntaxError, MemoryError, RecursionError):
            return False
    return False


def load_definitions(path) -> tuple[dict, list[str]]:
    """Execute only the imports, definitions and literal constants of a student's file.

    Returns ``(namespace, notes)``; a cell that does not parse or whose definitions
    raise is skipped with a note (its functions will then be reported missing).
    """
    from . import notebooks
    path = Path(path)
    nb = notebooks.read(path)
    ns: dict = {"__name__": "__student__"}
    notes = []
    for i, cell in enumerate(nb.cells):
        if cell.cell_type != "code":
            continue
        src = "\n".join("" if _MAGIC_RE.match(line) else line for line in cell.source.split("\n"))
        filename = f"<{path.name}, cell {i}>"
        try:
            tree = ast.parse(src, filename)
        except SyntaxError as exc:
            notes.append(f"cell {i} does not parse (line {exc.lineno}: {exc.msg}); its definitions were skipped")
            continue
        body = [n for n in tree.body if _keep(n)]
        if not body:
            continue
        linecache.cache[filename] = (len(src), None, src.splitlines(True), filename)
        try:
            exec(compile(ast.Module(body=body, type_ignores=[]), filename, "exec"), ns)
        except Exception as exc:
            notes.append(f"cell {i}: defining its functions raised {type(exc).__name__}: {exc}")
    return ns, notes


def _select(names, chapter: int | None, only) -> list[Exercise]:
    reg = registry()
    if only:
        unknown = [i for i in only if i not in reg]
        if unknown:
            raise KeyError(f"no exercise(s) {unknown}; registered: {sorted(reg)}")
        return [reg[i] for i in only]
    if chapter is not None and any(e.chapter == chapter for e in reg.values()):
        return [e for e in reg.values() if e.chapter == chapter]
    return [e for e in reg.values() if e.function in names]


def grade_namespace(ns: dict, exercises: list[Exercise]) -> list[Grade]:
    grades = []
    for ex in exercises:
        fn = ns.get(ex.function)
        if fn is None or not callable(fn):
            grades.append(Grade(ex.id, ex.function, ex.title, "missing",
                                message=f"no function named {ex.function} is defined"))
        else:
            grades.append(grade_function(ex.id, fn))
    return grades


def _grades_json(ns: dict, ids: list[str]) -> str:
    """Used inside a kernel by ``grade_file(execute=True)``."""
    return json.dumps([g.to_dict() for g in grade_namespace(ns, [get(i) for i in ids])])


_RESULT_MARK = "RNNBOOK-GRADES:"


def grade_file(path, exercises=None, chapter: int | None = None, execute: bool = False,
               timeout: int = 600) -> tuple[list[Grade], list[str]]:
    """Grade a student's ``.ipynb`` / ``.py``.  Returns ``(grades, notes)``.

    The exercises graded: ``exercises`` (ids) if given; else every exercise of the
    file's chapter (from ``chapter`` or the ``NN_`` prefix of its name), so that a
    deleted answer is reported missing; else every exercise whose function the file
    defines.  ``execute=True`` runs the whole notebook at the small size in a kernel
    first and grades the functions as they stand at its end.
    """
    from . import notebooks
    path = Path(path)
    ns, notes = load_definitions(path)
    chapter = chapter if chapter is not None else notebooks.chapter_number(path)
    chosen = _select(set(k for k, v in ns.items() if callable(v)), chapter, exercises)
    if not chosen:
        raise LookupError(f"{path}: it defines none of the exercise functions "
                          f"({', '.join(e.function for e in registry().values())})")
    if not execute:
        return grade_namespace(ns, chosen), notes
    nb = notebooks.read(path)
    for cell in nb.cells:
        if cell.cell_type == "code":
            cell.outputs, cell.execution_count = [], None
    import nbformat
    ids = [e.id for e in chosen]
    nb.cells.append(nbformat.v4.new_code_cell(
        "from rnnbook.book.grading import _grades_json as _rnnbook_grades\n"
        f"print({_RESULT_MARK!r} + _rnnbook_grades(globals(), {ids!r}))"))
    done = notebooks.execute(nb, small=True, allow_errors=True, timeout=timeout, name=path.name)
    for i, ename, evalue in notebooks.errors(done):
        if i < len(done.cells) - 1:          # the student's cells, not our grading cell
            notes.append(f"cell {i} raised {ename}: {evalue.splitlines()[0] if evalue else ''}")
    text = "".join(o.get("text", "") for o in done.cells[-1].get("outputs", []) if o.get("output_type") == "stream")
    if _RESULT_MARK not in text:
        raise RuntimeError(f"{path}: grading inside the kernel printed no result; kernel output:\n{text}")
    payload = text.split(_RESULT_MARK, 1)[1].strip().splitlines()[0]
    return [Grade.from_dict(d) for d in json.loads(payload)], notes


def render_report(path, grades: list[Grade], notes: list[str]) -> str:
    passed = sum(g.passed for g in grades)
    lines = [f"Grading {path}: {passed} of {len(grades)} exercise{'s' * (len(grades) != 1)} pass", ""]
    lines += [f"note: {n}" for n in notes] + ([""] if notes else [])
    for g in grades:
        lines += [g.render(), ""]
    return "\n".join(lines).rstrip() + "\n"


def main_grade(path, exercises=None, chapter=None, execute=False, out=sys.stdout) -> int:
    """The ``book grade`` command: print the report; 0 when every graded exercise passes."""
    grades, notes = grade_file(path, exercises, chapter, execute)
    out.write(render_report(path, grades, notes))
    return 0 if grades and all(g.passed for g in grades) else 1
