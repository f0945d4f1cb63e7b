"""Chapter files: finding them, reading them as notebooks, writing ``.ipynb``, executing them.

A chapter is ``chapters/NN_slug.py`` in jupytext's percent format.  It is read
with jupytext into an ``nbformat`` notebook; ``write`` produces ``.ipynb`` (or the
percent format again); ``execute`` runs a notebook top to bottom in a fresh
``python3`` kernel through ``nbclient``, with ``RNNBOOK_SMALL`` set as asked and
``PYTHONPATH`` pointing at the ``rnnbook`` that is running this code, so the kernel
imports the same package.
"""
from __future__ import annotations

import os
import re
import tempfile
import time
from pathlib import Path

import nbformat

from . import SMALL_ENV

CHAPTER_RE = re.compile(r"^(?P<number>\d\d)_(?P<slug>[a-z0-9_]+)\.py$")
CHAPTERS_ENV = "RNNBOOK_CHAPTERS"
KERNEL = "python3"


class ChapterError(RuntimeError):
    """A chapter could not be found, read or executed (the message says which cell failed)."""


def package_root() -> Path:
    """The folder that holds the ``rnnbook`` package being run (the repository root)."""
    return Path(__file__).resolve().parents[2]


def chapters_dir(explicit=None) -> Path:
    """``explicit``, else ``$RNNBOOK_CHAPTERS``, else ``./chapters``, else the repository's ``chapters/``."""
    candidates = [explicit] if explicit is not None else [os.environ.get(CHAPTERS_ENV), Path.cwd() / "chapters",
                                                          package_root() / "chapters"]
    for c in candidates:
        if c and Path(c).is_dir():
            return Path(c)
    raise ChapterError(f"no chapters folder found (looked at {[str(c) for c in candidates if c]}); "
                       f"pass --chapters-dir or set {CHAPTERS_ENV}")


def list_chapters(directory=None) -> list[Path]:
    """Every ``NN_slug.py`` in the chapters folder, in order."""
    d = chapters_dir(directory)
    return sorted(p for p in d.iterdir() if CHAPTER_RE.match(p.name))


def chapter_number(path) -> int | None:
    """``4`` for ``04_gru.py`` / ``04_gru.ipynb`` (also a student's copy named ``04_gru_alice.ipynb``)."""
    m = re.match(r"^(\d\d)_", Path(path).name)
    return int(m.group(1)) if m else None


def resolve(spec, directory=None) -> Path:
    """A chapter from ``"4"``, ``"04"``, ``"04_gru"`` or a path."""
    p = Path(str(spec))
    if p.suffix in (".py", ".ipynb") and p.exists():
        return p
    chapters = list_chapters(directory)
    s = str(spec)
    for c in chapters:
        if s.isdigit() and int(s) == chapter_number(c) or s in (c.stem, c.name):
            return c
    raise ChapterError(f"no chapter {spec!r}; chapters: {[c.stem for c in chapters]}")


def read(path):
    """A chapter or a student's file as an ``nbformat`` notebook (version 4).

    ``.ipynb`` is read as is; a ``.py`` in percent format (``# %%`` cells) through
    jupytext; any other ``.py`` (a plain module) becomes one code cell.
    """
    path = Path(path)
    if not path.exists():
        raise ChapterError(f"{path}: no such file")
    if path.suffix == ".ipynb":
        try:
            return nbformat.read(str(path), as_version=4)
        except Exception as exc:  # nbformat raises several kinds
            raise ChapterError(f"{path}: not a readable notebook ({exc})") from None
    if path.suffix != ".py":
        raise ChapterError(f"{path}: expected a .py (percent format or plain module) or an .ipynb file")
    text = path.read_text(encoding="utf-8")
    if re.search(r"^# %%", text, re.M):
        import jupytext
        return jupytext.reads(text, fmt="py:percent")
    nb = nbformat.v4.new_notebook()
    nb.cells.append(nbformat.v4.new_code_cell(text))
    return nb


def write(nb, path_without_suffix, fmt: str = "ipynb") -> Path:
    """Write ``nb`` as ``<path>.ipynb`` or ``<path>.py`` (percent format).  Returns the path."""
    base = Path(path_without_suffix)
    if fmt == "ipynb":
        out = base.with_suffix(".ipynb")
        nb.metadata.pop("jupytext", None)            # a plain notebook, not paired with a .py
        nb.metadata.setdefault("kernelspec", {"name": KERNEL, "display_name": "Python 3", "language": "python"})
        nbformat.validate(nb)
        nbformat.write(nb, str(out))
    elif fmt == "py":
        import jupytext
        out = base.with_suffix(".py")
        out.write_text(jupytext.writes(nb, fmt="py:percent"), encoding="utf-8")
    else:
        raise ValueError(f"fmt must be 'ipynb' or 'py', got {fmt!r}")
    return out


def kernel_env(small: bool, extra: dict | None = None) -> dict:
    """The kernel's environment: ours, plus ``RNNBOOK_SMALL`` and ``PYTHONPATH`` to this ``rnnbook``."""
    env = dict(os.environ)
    env[SMALL_ENV] = "1" if small else "0"
    root = str(package_root())
    env["PYTHONPATH"] = os.pathsep.join([root] + [p for p in env.get("PYTHONPATH", "").split(os.pathsep) if p])
    env.pop("MPLBACKEND", None)                      # the kernel's inline backend renders the figures
    env.update(extra or {})
    return env


def execute(nb_or_path, small: bool = True, timeout: int = 300, cwd=None, allow_errors: bool = False,
            name: str | None = None, extra_env: dict | None = None):
    """Run every code cell of a notebook (or chapter file) in a fresh ``python3`` kernel.

    Returns the executed notebook, with ``nb.metadata["rnnbook"]["seconds"]``.
    Unless ``allow_errors``, the first cell that raises stops the run with a
    :class:`ChapterError` naming the chapter and quoting the cell and traceback.
    ``cwd`` defaults to a fresh temporary folder, so a chapter cannot litter the tree.
    """
    from nbclient import NotebookClient
    from nbclient.exceptions import CellExecutionError, CellTimeoutError, DeadKernelError

    if isinstance(nb_or_path, (str, Path)):
        name = name or Path(nb_or_path).name
        nb = read(nb_or_path)
    else:
        nb = nb_or_path
        name = name or "notebook"
    nb.metadata["kernelspec"] = {"name": KERNEL, "display_name": "Python 3", "language": "python"}
    start = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="rnnbook-chapter-") as tmp:
        client = NotebookClient(nb, timeout=timeout, kernel_name=KERNEL, allow_errors=allow_errors,
                                extra_arguments=["--IPKernelApp.log_level=ERROR"],
                                resources={"metadata": {"path": str(cwd or tmp)}})
        try:
            client.execute(env=kernel_env(small, extra_env))
        except CellExecutionError as exc:
            raise ChapterError(f"{name} failed{' at small size' if small else ''}:\n{exc}") from None
        except (CellTimeoutError, DeadKernelError) as exc:
            raise ChapterError(f"{name}: {type(exc).__name__} ({exc}); a cell may take at most {timeout} s "
                               f"(--timeout)") from None
    nb.metadata.setdefault("rnnbook", {})["seconds"] = round(time.perf_counter() - start, 2)
    return nb


def code_cells(nb) -> list[str]:
    """The sources of the code cells, in order."""
    return [c.source for c in nb.cells if c.cell_type == "code"]


def errors(nb) -> list[tuple[int, str, str]]:
    """``(cell index, exception name, message)`` for every error output of an executed notebook."""
    out = []
    for i, cell in enumerate(nb.cells):
        for o in cell.get("outputs", []):
            if o.get("output_type") == "error":
                out.append((i, o.get("ename", ""), o.get("evalue", "")))
    return out
