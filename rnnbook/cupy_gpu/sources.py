"""The catalogue of CUDA sources and of every kernel specialisation the backend launches.

This module needs neither CuPy nor a GPU: the compile check (``compile_check.py``),
the host emulation (``emulation.py``) and the CuPy launcher all read the same
catalogue, so what CI compiles and emulates is exactly what runs on the GPU.

A kernel is named by its C++ *name expression*, e.g. ``"persistent_forward<float, 2>"``:
NVRTC instantiates the template from that string (``cupy.RawModule(...,
name_expressions=...)``), and the emulation wrapper calls the same expression.
``KERNELS[name]`` gives its source file and its parameter types, which the
launchers use to check every argument (arrays of the right dtype, scalars as
explicit 32-bit ``numpy.int32``) before launching.
"""
from __future__ import annotations

import hashlib
import os
import re
from dataclasses import dataclass

import numpy as np

KERNEL_DIR = os.path.join(os.path.dirname(os.path.abspath(__file__)), "kernels")
#: The .cu files that hold kernels (each becomes one module) and the headers they include.
CU_FILES = ("alternating.cu", "persistent.cu")
HEADERS = ("common.cuh", "cells.cuh")

#: Cell identifiers (must match the RNN_CELL_* macros in common.cuh).
CELL_IDS = {"rnn_tanh": 0, "rnn_relu": 1, "lstm": 2, "gru_after": 3, "gru_before": 4}
#: Gate rows per hidden unit (rnn_gates in common.cuh) and cached activations per unit.
GATES = {0: 1, 1: 1, 2: 4, 3: 3, 4: 3}
CACHE_SLOTS = {0: 0, 1: 0, 2: 4, 3: 4, 4: 3}

SCALARS = {"float": np.dtype(np.float32), "double": np.dtype(np.float64)}
CTYPE_OF = {v: k for k, v in SCALARS.items()}


@dataclass(frozen=True)
class KernelSpec:
    """One specialisation: its name expression, file and C++ parameter types."""
    name: str            # e.g. "lstm_pointwise_forward<double>"
    source: str          # e.g. "alternating.cu"
    params: tuple        # e.g. ("const T*", "T*", "int", ...) with T already substituted
    scalar: str          # "float" or "double"


def _expand(params, scalar):
    return tuple(p.replace("T", scalar) if "T*" in p else p for p in params)


# --------------------------------------------------------------------------- parameter lists
_P, _C, _I = "T*", "const T*", "int"
_ALTERNATING = {
    # name: (parameter types, extra template arguments besides T)
    "rnn_pointwise_forward": ((_C, _C, _P, _I, _I), (("false",), ("true",))),
    "rnn_pointwise_backward": ((_C, _C, _P, _I, _I), (("false",), ("true",))),
    "lstm_pointwise_forward": ((_C, _C, _C, _P, _P, _P, _I, _I), ((),)),
    "lstm_pointwise_backward": ((_C, _C, _C, _C, _C, _P, _P, _I, _I), ((),)),
    "gru_after_pointwise_forward": ((_C, _C, _C, _C, _P, _P, _I, _I), ((),)),
    "gru_after_pointwise_backward": ((_C, _C, _C, _P, _P, _P, _I, _I), ((),)),
    "gru_before_pointwise_gates": ((_C, _C, _C, _C, _P, _P, _I, _I), ((),)),
    "gru_before_pointwise_output": ((_C, _C, _C, _C, _P, _P, _I, _I), ((),)),
    "gru_before_pointwise_backward_gates": ((_C, _C, _C, _P, _P, _I, _I), ((),)),
    "gru_before_pointwise_backward_reset": ((_C, _C, _C, _P, _P, _I, _I), ((),)),
}
_U = "unsigned int*"
_PERSISTENT = {
    # xproj W_hh b_hh h0 c0 | y c_all gates rh_all | counters | T B H heads U Bt KC
    "persistent_forward": (_C, _C, _C, _C, _C, _P, _P, _P, _P, _U) + (_I,) * 7,
    # W_hh dy dh_T dc_T h0 c0 y c_all gates | dgi dgh dh0 dc0 | counters | T B H heads U Bt KC
    "persistent_backward": (_C,) * 9 + (_P,) * 4 + (_U,) + (_I,) * 7,
}


def _build_catalogue():
    specs = {}
    for scalar in SCALARS:
        for name, (params, variants) in _ALTERNATING.items():
            for extra in variants:
                expr = f"{name}<{', '.join((scalar,) + tuple(extra))}>"
                specs[expr] = KernelSpec(expr, "alternating.cu", _expand(params, scalar), scalar)
        for name, params in _PERSISTENT.items():
            for cell in sorted(set(CELL_IDS.values())):
                expr = f"{name}<{scalar}, {cell}>"
                specs[expr] = KernelSpec(expr, "persistent.cu", _expand(params, scalar), scalar)
    return specs


#: Every kernel specialisation the backend can launch, by name expression.
KERNELS: dict[str, KernelSpec] = _build_catalogue()


def kernel_name(base: str, dtype, *template_args) -> str:
    """The name expression of ``base`` for ``dtype`` (and further template arguments)."""
    scalar = CTYPE_OF.get(np.dtype(dtype))
    if scalar is None:
        raise TypeError(f"the GPU kernels support float32 and float64, got {np.dtype(dtype)}")
    args = ", ".join((scalar,) + tuple(str(a).lower() if isinstance(a, bool) else str(a) for a in template_args))
    name = f"{base}<{args}>"
    if name not in KERNELS:
        raise KeyError(f"no kernel specialisation {name!r} in the catalogue")
    return name


def names_in(source: str) -> list[str]:
    """Name expressions of every specialisation defined in ``source`` (a .cu file name)."""
    return [k for k, s in KERNELS.items() if s.source == source]


# --------------------------------------------------------------------------- reading sources
_INCLUDE = re.compile(r'^\s*#\s*include\s+"([^"]+)"\s*$')


def read_source(filename: str, expand: bool = True, _seen=None) -> str:
    """The text of ``kernels/<filename>``, with ``#include "..."`` of our headers inlined.

    Inlining (each header once, with ``#line`` markers so compiler messages point
    at the right file and line) makes the text self-contained: CuPy's on-disk
    kernel cache is keyed by the source text, so a change to a header
    correctly invalidates every kernel that uses it.
    """
    path = os.path.join(KERNEL_DIR, filename)
    with open(path, encoding="utf-8") as f:
        lines = f.read().splitlines()
    if not expand:
        return "\n".join(lines) + "\n"
    seen = set() if _seen is None else _seen
    out = [f'#line 1 "{filename}"']
    for number, line in enumerate(lines, start=1):
        m = _INCLUDE.match(line)
        if m and m.group(1) in HEADERS:
            if m.group(1) not in seen:
                seen.add(m.group(1))
                out.append(read_source(m.group(1), True, seen).rstrip("\n"))
            out.append(f'#line {number + 1} "{filename}"')
        elif line.strip() == "#pragma once":
            out.append("")
        else:
            out.append(line)
    return "\n".join(out) + "\n"


def source_digest() -> str:
    """A hash of every kernel source and header (keys the host-emulation build cache)."""
    h = hashlib.sha256()
    for name in CU_FILES + HEADERS + ("host_emulation.h",):
        with open(os.path.join(KERNEL_DIR, name), "rb") as f:
            h.update(name.encode() + b"\0" + f.read())
    return h.hexdigest()[:16]


def check_args(spec: KernelSpec, args) -> None:
    """Every argument must match the kernel's C++ parameter: arrays of the right dtype, int32 scalars.

    A Python ``int`` is refused on purpose: CuPy would pass it as a 64-bit
    integer, which a kernel taking ``int`` would misread.
    """
    if len(args) != len(spec.params):
        raise TypeError(f"{spec.name} takes {len(spec.params)} arguments, got {len(args)}")
    for i, (ptype, a) in enumerate(zip(spec.params, args)):
        if ptype == "int":
            if not isinstance(a, np.int32):
                raise TypeError(f"{spec.name}: argument {i} must be numpy.int32, got {type(a).__name__}")
        elif ptype == "unsigned int*":
            if getattr(a, "dtype", None) != np.dtype(np.uint32):
                raise TypeError(f"{spec.name}: argument {i} must be a uint32 array")
        else:
            want = SCALARS[ptype.replace("const ", "").rstrip("*")]
            if getattr(a, "dtype", None) != want:
                raise TypeError(f"{spec.name}: argument {i} must be a {want} array, got "
                                f"{getattr(a, 'dtype', type(a).__name__)}")
            if not a.flags.c_contiguous:
                raise ValueError(f"{spec.name}: argument {i} must be C-contiguous")
