"""Command-line argument types shared by the benchmark scripts (imported from beside them)."""
import argparse


def positive(text: str) -> int:
    """An ``argparse`` type: an integer of at least 1, or a clear error naming the value."""
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1, got {value}")
    return value
