"""The checkers of the book's exercises, one module per chapter (``chNN_<slug>.py``).

Every module here is imported by ``rnnbook.book.grading.registry()``; a module
registers its exercises with ``@rnnbook.book.grading.exercise(...)``.  Shared
helpers (random problems, unpacking a step's answer, the whole-sequence
finite-difference check) are in ``common.py``.
"""
