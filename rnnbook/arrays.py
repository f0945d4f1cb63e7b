"""Small helpers that let backend-agnostic code (layers, losses, optimisers) run on
NumPy and CuPy arrays alike."""
import importlib

import numpy as np


def array_module(a):
    """``numpy`` for NumPy arrays, ``cupy`` for CuPy arrays (without importing CuPy otherwise)."""
    root = type(a).__module__.split(".")[0]
    return np if root in ("numpy", "builtins") else importlib.import_module(root)


def to_numpy(a):
    """A NumPy copy/view of ``a`` (CuPy arrays are copied to the host)."""
    if isinstance(a, np.ndarray):
        return a
    if hasattr(a, "get"):
        return a.get()
    return np.asarray(a)


def tree_map(fn, tree):
    """Apply ``fn`` to every array in a nest of dicts, tuples and lists."""
    if isinstance(tree, dict):
        return {k: tree_map(fn, v) for k, v in tree.items()}
    if isinstance(tree, (tuple, list)):
        return type(tree)(tree_map(fn, v) for v in tree)
    return fn(tree)
