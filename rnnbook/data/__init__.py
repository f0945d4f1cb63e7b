"""Data shipped with the package: nothing is downloaded at run time.

- ``tinyshakespeare.txt``: about 1.1 MB of Shakespeare's plays (public domain), the
  usual corpus for character-level language models.
- ``tasks``: synthetic memory tasks (copy, adding) generated from a seed.
- ``timing_tasks``: N-parity and N-delayed match-to-sample, and the single-N and
  multi-N curricula over ``N``.
- ``tagging``: a tiny BIO named-entity tagging task with ambiguous words.
"""
from .tasks import adding_task, copy_task, one_hot
from .tagging import tagging_task
from .text import CharVocab, char_batches, load_text
from .timing_tasks import (MultiNCurriculum, SingleNCurriculum, bits_to_inputs, dms_targets, dms_task,
                           parity_targets, parity_task)

__all__ = ["CharVocab", "MultiNCurriculum", "SingleNCurriculum", "adding_task", "bits_to_inputs", "char_batches",
           "copy_task", "dms_targets", "dms_task", "load_text", "one_hot", "parity_targets", "parity_task",
           "tagging_task"]
