"""Compile every CUDA kernel of the GPU backend for real GPU targets -- without a GPU.

CI has no GPU, but a syntax or type error in a ``.cu`` file must still fail it.
This module compiles every specialisation in ``sources.KERNELS`` to machine code
(CUBIN) for each target architecture, with

* **NVRTC** (the runtime compiler CuPy itself uses), loaded with ctypes from the
  ``nvidia-cuda-nvrtc`` wheel (``pip install nvidia-cuda-nvrtc``, part of the
  ``dev`` extra) or from a CUDA toolkit; or
* **nvcc**, when NVRTC cannot be found.

Compiling to CUBIN (not only PTX) runs the assembler too, so register and
shared-memory limits are checked; the assembler's resource report (registers,
spills, stack) is returned for each kernel.

Command line::

    python -m rnnbook.cupy_gpu.compile_check            # sm_80 and sm_90
    python -m rnnbook.cupy_gpu.compile_check --arch sm_90 --compiler nvcc
"""
from __future__ import annotations

import ctypes
import glob
import os
import re
import shutil
import subprocess
import sys
import tempfile
from dataclasses import dataclass, field

from . import sources

DEFAULT_ARCHS = ("sm_80", "sm_90")
NVRTC_OPTIONS = ("-std=c++17", "--ptxas-options=-v")


class CompilerNotFound(RuntimeError):
    """Neither NVRTC nor nvcc is available."""


@dataclass
class Result:
    """The outcome of compiling one .cu file for one architecture."""
    source: str
    arch: str
    compiler: str
    ok: bool
    log: str
    kernels: list = field(default_factory=list)     # name expressions compiled
    binary_size: int = 0
    resources: dict = field(default_factory=dict)   # mangled name -> "N registers, ..."

    def summary(self) -> str:
        status = "ok" if self.ok else "FAILED"
        return (f"{self.source:<16} {self.arch:<6} {self.compiler:<6} {status:<6} "
                f"{len(self.kernels):>3} kernels  {self.binary_size:>8} bytes")


# --------------------------------------------------------------------------- NVRTC
def _nvrtc_candidates():
    env = os.environ.get("RNNBOOK_NVRTC")
    if env:
        yield env
    try:  # the pip wheels: nvidia-cuda-nvrtc (CUDA 13: nvidia/cu13/lib) or -cu12 (nvidia/cuda_nvrtc/lib)
        import nvidia  # noqa: F401  (a namespace package)
        for root in list(getattr(sys.modules["nvidia"], "__path__", [])):
            for pattern in ("cu*/lib/libnvrtc.so*", "cuda_nvrtc/lib/libnvrtc.so*"):
                for p in sorted(glob.glob(os.path.join(root, pattern)), reverse=True):
                    if "builtins" not in os.path.basename(p) and "alt" not in os.path.basename(p):
                        yield p
    except ImportError:
        pass
    for home in (os.environ.get("CUDA_HOME"), os.environ.get("CUDA_PATH"), "/usr/local/cuda"):
        if home:
            for p in sorted(glob.glob(os.path.join(home, "lib*", "libnvrtc.so*")), reverse=True):
                yield p
    yield "libnvrtc.so"


def load_nvrtc():
    """The NVRTC shared library as a ``ctypes.CDLL``, or ``None`` when it cannot be found."""
    for path in _nvrtc_candidates():
        try:
            lib = ctypes.CDLL(path)
            lib.nvrtcGetErrorString.restype = ctypes.c_char_p
            return lib
        except OSError:
            continue
    return None


def nvrtc_version(lib) -> str:
    major, minor = ctypes.c_int(), ctypes.c_int()
    lib.nvrtcVersion(ctypes.byref(major), ctypes.byref(minor))
    return f"{major.value}.{minor.value}"


def compile_nvrtc(lib, source_name: str, arch: str, extra_options=(), code: str | None = None) -> Result:
    """Compile one .cu file (headers inlined) with every name expression it defines.

    ``code`` replaces the file's text (the tests use it to show that a broken
    kernel fails the check).
    """
    code = (sources.read_source(source_name) if code is None else code).encode()
    names = sources.names_in(source_name)
    prog = ctypes.c_void_p()
    _check(lib, lib.nvrtcCreateProgram(ctypes.byref(prog), code, source_name.encode(), 0, None, None))
    try:
        for n in names:
            _check(lib, lib.nvrtcAddNameExpression(prog, n.encode()))
        opts = [f"--gpu-architecture={arch}", *NVRTC_OPTIONS, *extra_options]
        argv = (ctypes.c_char_p * len(opts))(*[o.encode() for o in opts])
        rc = lib.nvrtcCompileProgram(prog, len(opts), argv)
        size = ctypes.c_size_t()
        lib.nvrtcGetProgramLogSize(prog, ctypes.byref(size))
        buf = ctypes.create_string_buffer(size.value)
        lib.nvrtcGetProgramLog(prog, buf)
        log = buf.value.decode(errors="replace")
        if rc != 0:
            return Result(source_name, arch, "nvrtc", False, log, names)
        lib.nvrtcGetCUBINSize(prog, ctypes.byref(size))
        lowered = {}
        for n in names:
            p = ctypes.c_char_p()
            _check(lib, lib.nvrtcGetLoweredName(prog, n.encode(), ctypes.byref(p)))
            lowered[p.value.decode()] = n
        return Result(source_name, arch, "nvrtc", size.value > 0, log, names, size.value,
                      _resources(log, lowered))
    finally:
        lib.nvrtcDestroyProgram(ctypes.byref(prog))


def _check(lib, rc):
    if rc != 0:
        raise RuntimeError(f"NVRTC error {rc}: {lib.nvrtcGetErrorString(rc).decode()}")


_FUNC = re.compile(r"Compiling entry function '([^']+)'")
_USED = re.compile(r"Used (\d+) registers.*")


def _resources(log: str, lowered: dict) -> dict:
    """Registers, stack and spills per kernel from the assembler's ``-v`` report."""
    out, current = {}, None
    for line in log.splitlines():
        m = _FUNC.search(line)
        if m:
            current = lowered.get(m.group(1), m.group(1))
            out[current] = ""
        elif current and ("spill" in line or ("Used" in line and "registers" in line)):
            text = line.split(":", 1)[-1] if "info" in line else line.split(".", 1)[-1]
            out[current] = "; ".join(p for p in (out[current], text.strip()) if p)
    return out


# --------------------------------------------------------------------------- nvcc
def find_nvcc():
    for cand in (os.environ.get("RNNBOOK_NVCC"), shutil.which("nvcc"), "/usr/local/cuda/bin/nvcc"):
        if cand and os.path.exists(cand):
            return cand
    return None


def compile_nvcc(nvcc: str, source_name: str, arch: str, code: str | None = None) -> Result:
    """Compile with nvcc: explicit instantiations are generated from the catalogue."""
    names = sources.names_in(source_name)
    code = sources.read_source(source_name) if code is None else code
    # nvcc has no name expressions; instantiate each template explicitly instead
    inst = []
    for n in names:
        spec = sources.KERNELS[n]
        inst.append(f"template __global__ void {n}({', '.join(spec.params)});")
    with tempfile.TemporaryDirectory() as d:
        src = os.path.join(d, "k.cu")
        with open(src, "w") as f:
            f.write(code + "\n" + "\n".join(inst) + "\n")
        out = os.path.join(d, "k.cubin")
        cmd = [nvcc, "-cubin", f"-arch={arch}", "-std=c++17", "-Xptxas", "-v", "-o", out, src]
        p = subprocess.run(cmd, capture_output=True, text=True)
        ok = p.returncode == 0 and os.path.exists(out)
        size = os.path.getsize(out) if ok else 0
    return Result(source_name, arch, "nvcc", ok, p.stdout + p.stderr, names, size, _resources(p.stderr, {}))


# --------------------------------------------------------------------------- driver
def available_compiler(prefer: str = "auto"):
    """``("nvrtc", lib)`` or ``("nvcc", path)``; raises CompilerNotFound with advice."""
    if prefer in ("auto", "nvrtc"):
        lib = load_nvrtc()
        if lib is not None:
            return "nvrtc", lib
        if prefer == "nvrtc":
            raise CompilerNotFound("NVRTC not found: pip install nvidia-cuda-nvrtc (in the 'dev' extra), "
                                   "or set RNNBOOK_NVRTC=/path/to/libnvrtc.so")
    nvcc = find_nvcc()
    if nvcc is not None:
        return "nvcc", nvcc
    raise CompilerNotFound("no CUDA compiler found: pip install nvidia-cuda-nvrtc (in rnnbook's 'dev' "
                           "extra) or put nvcc on PATH")


def compile_all(archs=DEFAULT_ARCHS, prefer: str = "auto") -> list[Result]:
    """Compile every .cu file for every architecture; one Result per (file, arch)."""
    kind, handle = available_compiler(prefer)
    results = []
    for arch in archs:
        for src in sources.CU_FILES:
            results.append(compile_nvrtc(handle, src, arch) if kind == "nvrtc" else compile_nvcc(handle, src, arch))
    return results


def main(argv=None) -> int:
    import argparse
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--arch", action="append", help="target, e.g. sm_90 (repeatable; default sm_80 and sm_90)")
    ap.add_argument("--compiler", default="auto", choices=("auto", "nvrtc", "nvcc"))
    ap.add_argument("--resources", action="store_true", help="print registers/spills per kernel")
    args = ap.parse_args(argv)
    results = compile_all(tuple(args.arch or DEFAULT_ARCHS), args.compiler)
    for r in results:
        print(r.summary())
        if not r.ok:
            print(r.log)
        elif args.resources:
            for name, info in sorted(r.resources.items()):
                print(f"    {name:<48} {info}")
    return 0 if all(r.ok for r in results) else 1


if __name__ == "__main__":
    sys.exit(main())
