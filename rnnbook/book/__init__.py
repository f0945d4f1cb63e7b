"""Tooling for the book: the small-size switch, exercises, editions, grading, timing.

A chapter imports what it needs from here::

    from rnnbook.book import SMALL, pick, check, ImplementMe

- ``SMALL`` is ``True`` when the environment variable ``RNNBOOK_SMALL`` is set to
  ``1`` (CI runs every chapter that way); ``pick(full=..., small=...)`` chooses a size.
- ``ImplementMe`` is what a stub in the student edition raises.
- ``check("1.1", rnn_step_backward)`` runs the grader's diagnostics for one
  exercise inside the notebook and prints them.

The rest lives in submodules: ``editions`` (solution markers, the student edition),
``notebooks`` (chapter files, conversion to ``.ipynb``, execution), ``grading``
(the exercise registry and the grader), ``timing`` (the backend timing table),
``experiments`` (runs several chapters share, e.g. a character language model).
The command line is ``python -m rnnbook book build|student|grade|run|list``.
"""
from __future__ import annotations

import os

#: the environment variable that chooses the small size
SMALL_ENV = "RNNBOOK_SMALL"
_TRUE = ("1", "true", "yes", "on")
_FALSE = ("", "0", "false", "no", "off")


def small_from_env(environ=None) -> bool:
    """Read ``RNNBOOK_SMALL`` (``1``/``true``/``yes``/``on`` or ``0``/``false``/``no``/``off``/unset)."""
    value = (os.environ if environ is None else environ).get(SMALL_ENV, "").strip().lower()
    if value in _TRUE:
        return True
    if value in _FALSE:
        return False
    raise ValueError(f"environment variable {SMALL_ENV}={value!r}: expected 1 or 0 (or true/false, yes/no, on/off)")


#: ``True`` when the chapters should run at their small size (read once, at import).
SMALL: bool = small_from_env()


def pick(full, small):
    """``small`` when ``SMALL`` is on, ``full`` otherwise: ``steps = pick(full=2000, small=20)``."""
    return small if SMALL else full


class ImplementMe(NotImplementedError):
    """Raised by an exercise stub of the student edition.

    ``ImplementMe("1.1", "compute da = dh ⊙ φ'(a), then ...")`` names the exercise
    and says what to write in place of the ``raise``.
    """

    def __init__(self, exercise: str, task: str = ""):
        self.exercise = exercise
        self.task = task
        msg = f"Exercise {exercise} is not implemented yet"
        msg += f": {task}" if task else "."
        msg += ("\nWrite your code in place of this `raise` line, then run the check cell below it "
                "(or `python -m rnnbook book grade <your notebook>`).")
        super().__init__(msg)


def check(exercise: str, function, quiet: bool = False):
    """Grade ``function`` as the answer to ``exercise`` and print the diagnostics.

    Returns the :class:`~rnnbook.book.grading.Grade`.  An exercise that is not
    implemented yet (its stub raises :class:`ImplementMe`) only prints a notice, so
    "Run all" goes on through the chapter; a wrong answer raises
    :class:`~rnnbook.book.grading.ExerciseFailed` with the diagnosis.
    """
    from .grading import ExerciseFailed, grade_function
    grade = grade_function(exercise, function)
    if not quiet:
        print(grade.render())
    if grade.status not in ("pass", "not implemented"):
        raise ExerciseFailed(grade.render())
    return grade


__all__ = ["SMALL", "SMALL_ENV", "ImplementMe", "check", "pick", "small_from_env"]
