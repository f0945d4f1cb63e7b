"""Character-level text: the bundled corpus, a vocabulary, and batches for stateful training."""
from __future__ import annotations

from importlib import resources

import numpy as np

CORPORA = {"tinyshakespeare": "tinyshakespeare.txt"}


def load_text(name: str = "tinyshakespeare", max_chars: int | None = None) -> str:
    """The bundled corpus ``name`` (optionally only its first ``max_chars`` characters)."""
    if name not in CORPORA:
        raise ValueError(f"unknown corpus {name!r}; bundled corpora: {sorted(CORPORA)}")
    text = resources.files(__package__).joinpath(CORPORA[name]).read_text(encoding="utf-8")
    return text if max_chars is None else text[:max_chars]


class CharVocab:
    """Maps characters to integer ids ``0 … V-1`` (sorted, so the ids are reproducible)."""

    def __init__(self, text: str):
        if not text:
            raise ValueError("cannot build a vocabulary from empty text")
        self.chars = sorted(set(text))
        self.index = {c: i for i, c in enumerate(self.chars)}

    def __len__(self) -> int:
        return len(self.chars)

    def encode(self, text: str) -> np.ndarray:
        try:
            return np.fromiter((self.index[c] for c in text), dtype=np.int64, count=len(text))
        except KeyError as exc:
            raise ValueError(f"character {exc.args[0]!r} is not in the vocabulary") from None

    def decode(self, ids) -> str:
        return "".join(self.chars[int(i)] for i in np.asarray(ids).reshape(-1))


def char_batches(ids: np.ndarray, batch_size: int, seq_len: int):
    """Endless ``(inputs (T, B), targets (T, B))`` pairs for stateful truncated BPTT.

    The text is cut into ``B`` equal streams that are read side by side, so chunk
    ``k+1`` of stream ``b`` continues chunk ``k``: the final state of one batch is
    the right initial state for the next.  Targets are the inputs shifted by one.
    After a pass over the text the reading restarts from the beginning.
    """
    ids = np.asarray(ids)
    if ids.ndim != 1 or ids.dtype.kind not in "iu":
        raise TypeError("ids must be a 1-D integer array (use CharVocab.encode)")
    stream_len = (len(ids) - 1) // batch_size
    if stream_len < seq_len:
        raise ValueError(f"text of {len(ids)} tokens is too short for {batch_size} streams of "
                         f"chunks of {seq_len}")
    streams = ids[: batch_size * stream_len + 1]
    inputs = streams[:-1].reshape(batch_size, stream_len).T        # (stream_len, B)
    targets = streams[1:].reshape(batch_size, stream_len).T
    n_chunks = stream_len // seq_len
    while True:
        for k in range(n_chunks):
            sl = slice(k * seq_len, (k + 1) * seq_len)
            yield np.ascontiguousarray(inputs[sl]), np.ascontiguousarray(targets[sl])
