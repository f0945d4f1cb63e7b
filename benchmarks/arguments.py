"""Command-line argument types and set-up shared by the benchmark scripts (imported from beside them)."""
import argparse
import os
import sys


def positive(text: str) -> int:
    """An ``argparse`` type: an integer of at least 1, or a clear error naming the value."""
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1, got {value}")
    return value


def split_argument(text: str) -> tuple[str, int | None]:
    """An ``argparse`` type: ``auto``, ``rows[:n]`` or ``units[:n]`` as ``(how, blocks)`` for
    ``bptt.split``."""
    how, _, blocks = text.partition(":")
    if how not in ("auto", "rows", "units") or (blocks and not blocks.isdigit()):
        raise argparse.ArgumentTypeError(f"expected auto, rows[:n] or units[:n], got {text!r}")
    return how, int(blocks) if blocks else None


def use_threads(n: int) -> None:
    """Give every library ``n`` threads (Numba, OpenMP, OpenBLAS, MKL: set before any of them
    is imported) and put the repository first on ``sys.path``, so that the scripts run the
    checkout they sit in."""
    for v in ("NUMBA_NUM_THREADS", "OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
        os.environ[v] = str(n)
    sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def inputs_argument(ap: argparse.ArgumentParser) -> None:
    """Add ``--D``, the inputs per step (``None``, i.e. ``H``, if not given: :func:`random_problem`'s default)."""
    ap.add_argument("--D", type=positive, default=None, help="inputs per step (default: H)")


def single_sequence_arguments(ap: argparse.ArgumentParser, H: list[int], rounds: int, B: int = 1,
                              T: int | list[int] = 1024) -> argparse.Namespace:
    """Parse the options of the scripts that compare two settings of the Numba backend on single
    sequences or small batches (``--cells``, ``--H``, ``--B``, ``--T``, ``--rounds``,
    ``--threads``; defaults as given, two threads), then :func:`use_threads`.  ``T`` given as a
    list makes ``--T`` take several lengths."""
    ap.add_argument("--cells", nargs="+", choices=["lstm", "gru", "rnn"], default=["lstm", "gru", "rnn"])
    ap.add_argument("--H", type=positive, nargs="+", default=H)
    ap.add_argument("--B", type=positive, default=B)
    ap.add_argument("--T", type=positive, default=T, nargs="+" if isinstance(T, list) else None)
    ap.add_argument("--rounds", type=positive, default=rounds)
    ap.add_argument("--threads", type=positive, default=2)
    args = ap.parse_args()
    use_threads(args.threads)
    return args


def random_problem(cell: str, H: int, T: int, B: int, D: int | None = None):
    """``(params, x, dy)`` in float32 for ``cell`` with ``D`` inputs (``H`` if not given), seeded
    by ``H``: the weights of ``init_params`` with noise added to every entry (biases included)."""
    import numpy as np

    import rnnbook as rb
    rng = np.random.default_rng(H)
    D = H if D is None else D
    params = rb.init_params(cell, D, H, dtype=np.float32, seed=H)
    params = {k: (v + 0.1 * rng.standard_normal(v.shape)).astype(np.float32) for k, v in params.items()}
    x = rng.standard_normal((T, B, D)).astype(np.float32)
    dy = rng.standard_normal((T, B, H)).astype(np.float32)
    return params, x, dy


#: gate blocks of each cell's ``W_hh`` (``G·H`` rows)
GATES = {"rnn": 1, "lstm": 4, "gru": 3}


def training_step(cell: str, params, x, dy) -> tuple[float, float]:
    """One Numba training step (forward, then backward with every gradient): ``(seconds of
    the forward pass, seconds of the whole step)``."""
    import time

    import rnnbook as rb
    t0 = time.perf_counter()
    _, _, cache = rb.forward(cell, params, x, backend="numba")
    t1 = time.perf_counter()
    rb.backward(cell, params, cache, dy)
    return t1 - t0, time.perf_counter() - t0


def interleaved(rounds: int, modes: tuple, measure, calls: int = 2) -> dict:
    """``{mode: [measurement per round]}``: in each round every mode in turn (the order of the
    two modes alternating from round to round) calls ``measure(mode)`` ``calls`` times and
    keeps the last, so that each kept call follows one of its own mode."""
    times = {mode: [] for mode in modes}
    for r in range(rounds):
        for mode in (modes if r % 2 else modes[::-1]):
            for _ in range(calls):
                value = measure(mode)
            times[mode].append(value)
    return times
