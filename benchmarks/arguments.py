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


def use_threads(n: int) -> None:
    """Give every library ``n`` threads (Numba, OpenMP, OpenBLAS, MKL: set before any of them
    is imported) and put the repository first on ``sys.path``, so that the scripts run the
    checkout they sit in."""
    for v in ("NUMBA_NUM_THREADS", "OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
        os.environ[v] = str(n)
    sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
