"""Data shipped with the package: nothing is downloaded at run time.

- ``tinyshakespeare.txt``: about 1.1 MB of Shakespeare's plays (public domain), the
  usual corpus for character-level language models.
- ``tasks``: synthetic memory tasks (copy, adding) generated from a seed.
"""
from .tasks import adding_task, copy_task, one_hot
from .text import CharVocab, char_batches, load_text

__all__ = ["CharVocab", "adding_task", "char_batches", "copy_task", "load_text", "one_hot"]
