r"""A tiny synthetic sequence-tagging task (named-entity style, BIO tags), generated from a seed.

Five tags, in the BIO scheme of chunking and named-entity recognition::

    0 O        outside any entity
    1 B-PER    first word of a person's name      2 I-PER   a later word of it
    3 B-LOC    first word of a place name         4 I-LOC   a later word of it

Tag sequences come from a Markov chain that respects the BIO grammar (``I-X``
only follows ``B-X`` or ``I-X``).  Each tag emits a word id; most words belong
to one tag, but two are **ambiguous**: word ``AMBIGUOUS_B`` may start either kind
of entity and word ``AMBIGUOUS_I`` may continue either kind.  Their tag is fixed
only by the neighbours (``AMBIGUOUS_I`` after ``B-LOC`` is ``I-LOC``), which is the
structure a BiLSTM reads from context and a CRF's transition scores enforce
(a CRF never decodes the forbidden ``B-PER → I-LOC``).

Word ids start at 1; ``0`` is the padding id.  Sequences have random lengths
and are padded at the end; ``mask`` marks the real positions.
"""
import numpy as np

TAG_NAMES = ("O", "B-PER", "I-PER", "B-LOC", "I-LOC")
PAD = 0
AMBIGUOUS_B = 15
AMBIGUOUS_I = 16
VOCAB_SIZE = 17
#: the unambiguous words of each tag
WORDS = {0: (1, 2, 3, 4, 5, 6), 1: (7, 8), 2: (9, 10), 3: (11, 12), 4: (13, 14)}
#: P(first tag) and P(next tag | tag); rows sum to 1, zeros are the BIO grammar
START_PROBS = np.array([0.5, 0.25, 0.0, 0.25, 0.0])
TRANSITION_PROBS = np.array([
    # O     B-PER  I-PER  B-LOC  I-LOC
    [0.60, 0.20, 0.00, 0.20, 0.00],    # from O
    [0.30, 0.05, 0.60, 0.05, 0.00],    # from B-PER
    [0.50, 0.05, 0.40, 0.05, 0.00],    # from I-PER
    [0.30, 0.05, 0.00, 0.05, 0.60],    # from B-LOC
    [0.50, 0.05, 0.00, 0.05, 0.40],    # from I-LOC
])


def tagging_task(batch_size: int, max_length: int = 12, min_length: int = 4, ambiguity: float = 0.3,
                 seed: int = 0):
    """Returns ``(tokens (T, B) int64, tags (T, B) int64, mask (T, B) float64)`` with ``T = max_length``.

    ``ambiguity`` is the probability that a ``B-*`` or ``I-*`` tag emits its
    ambiguous word instead of one of its own.  Padding has token ``0`` and tag ``0``.
    """
    for name, v in (("batch_size", batch_size), ("max_length", max_length), ("min_length", min_length)):
        if isinstance(v, bool) or not isinstance(v, (int, np.integer)) or v < 1:
            raise ValueError(f"{name} must be a positive integer, got {v!r}")
    if min_length > max_length:
        raise ValueError(f"min_length ({min_length}) must not exceed max_length ({max_length})")
    if not 0.0 <= ambiguity <= 1.0:
        raise ValueError(f"ambiguity must be a probability in [0, 1], got {ambiguity!r}")
    rng = np.random.default_rng(seed)
    T, B = int(max_length), int(batch_size)
    lengths = rng.integers(min_length, max_length + 1, size=B)
    tags = np.zeros((T, B), np.int64)
    tokens = np.full((T, B), PAD, np.int64)
    for b in range(B):
        tag = rng.choice(len(TAG_NAMES), p=START_PROBS)
        for t in range(lengths[b]):
            if t > 0:
                tag = rng.choice(len(TAG_NAMES), p=TRANSITION_PROBS[tag])
            tags[t, b] = tag
            if tag != 0 and rng.random() < ambiguity:
                tokens[t, b] = AMBIGUOUS_B if tag in (1, 3) else AMBIGUOUS_I
            else:
                tokens[t, b] = rng.choice(WORDS[tag])
    mask = (np.arange(T)[:, None] < lengths[None, :]).astype(np.float64)
    return tokens, tags, mask
