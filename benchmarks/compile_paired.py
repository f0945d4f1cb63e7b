"""First-call compile time of two versions of the Numba kernels, paired in one process.

    python benchmarks/compile_paired.py e54d766^                  # that commit against the working tree
    python benchmarks/compile_paired.py e54d766^ --path panels --processes 6

Separate processes minutes apart carry the development VMs' drift (±20-30% on compile
times), which hides a 10% change.  This script puts both versions in *one* process:
``git archive`` writes the old commit's ``rnnbook`` under the package name ``rb_old`` and
the working tree's under ``rb_new`` (the package imports itself relatively, so a copy under
another name is a package of its own, with kernels Numba compiles and caches apart).  Each
process gets an empty ``NUMBA_CACHE_DIR``, pays Numba's one-time start-up on a throwaway
function, then makes the first forward and backward call of one cell on each version in
turn, alternating which goes first from process to process.  It prints, per cell and
pass, each version's median seconds and the median [range] of new / old over the
processes.  ``--path`` is the product the kernels take (``bptt.strategy``: ``loops``
compiles a kernel for the weight as a matrix, ``panels`` for packed panels).
"""
import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)

CELLS = [("rnn", {"nonlinearity": "tanh"}, "float32"), ("lstm", {}, "float32"),
         ("gru", {"reset_after": True}, "float64"), ("gru", {"reset_after": False}, "float32")]

_ONE_PROCESS = r"""
import importlib, json, sys, time
import numpy as np
from numba import njit

@njit
def _start_up(x):
    return x + 1

_start_up(1)                                   # Numba's one-time start-up, outside the pair
order, arch, opts, dtype, path = sys.argv[1].split(","), sys.argv[2], json.loads(sys.argv[3]), np.dtype(sys.argv[4]), sys.argv[5]
out = {}
for name in order:
    pkg, backend = importlib.import_module(name), importlib.import_module(name + ".numba_cpu")
    cell = getattr(backend, arch)
    params = pkg.init_params(arch, 3, 4, dtype=dtype, **opts)
    x = np.ones((2, 3, 3), dtype)
    with backend.bptt.strategy(path):
        t0 = time.perf_counter(); y, _, cache = cell.forward(params, x, **opts); t1 = time.perf_counter()
        cell.backward(params, cache, np.ones_like(y)); t2 = time.perf_counter()
    out[name] = (t1 - t0, t2 - t1)
print(json.dumps(out))
"""


def copy_package(source_root, name, into):
    """``rnnbook`` of ``source_root`` under ``into/name``, its dispatch table renamed to match."""
    shutil.copytree(os.path.join(source_root, "rnnbook"), os.path.join(into, name),
                    ignore=shutil.ignore_patterns("__pycache__"))
    dispatch = os.path.join(into, name, "dispatch.py")
    with open(dispatch) as fh:
        text = fh.read()
    with open(dispatch, "w") as fh:
        fh.write(text.replace('"rnnbook.', f'"{name}.'))


def paired_packages(old, work):
    """``rb_old`` (``rnnbook`` of commit ``old``, from ``git archive``) and ``rb_new`` (the working
    tree's) side by side under ``work/packages``; that directory, for ``sys.path`` or ``PYTHONPATH``."""
    old_root = os.path.join(work, "old")
    os.makedirs(old_root)
    archive = subprocess.run(["git", "-C", ROOT, "archive", old, "rnnbook"], capture_output=True, check=True)
    subprocess.run(["tar", "-x", "-C", old_root], input=archive.stdout, check=True)
    packages = os.path.join(work, "packages")
    os.makedirs(packages)
    copy_package(old_root, "rb_old", packages)
    copy_package(ROOT, "rb_new", packages)
    return packages


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("old", help="the commit to compare against (the working tree is the new version)")
    ap.add_argument("--path", choices=("loops", "panels"), default="loops")
    ap.add_argument("--processes", type=int, default=4, help="processes per cell")
    args = ap.parse_args()
    if args.processes < 1:
        ap.error("--processes must be at least 1")
    with tempfile.TemporaryDirectory() as work:
        packages = paired_packages(args.old, work)
        results = {}
        for i in range(args.processes):
            order = "rb_old,rb_new" if i % 2 == 0 else "rb_new,rb_old"
            for arch, opts, dtype in CELLS:
                with tempfile.TemporaryDirectory() as cache_dir:
                    env = dict(os.environ, NUMBA_CACHE_DIR=cache_dir, PYTHONPATH=packages, OPENBLAS_NUM_THREADS="1")
                    run = subprocess.run([sys.executable, "-c", _ONE_PROCESS, order, arch, json.dumps(opts), dtype,
                                          args.path], env=env, capture_output=True, text=True, cwd=work)
                if run.returncode:
                    sys.exit(run.stderr[-3000:])
                results.setdefault((arch, json.dumps(opts), dtype), []).append(json.loads(run.stdout.splitlines()[-1]))
    print(f"first call, seconds: {args.old} (old) against the working tree (new), path {args.path}, "
          f"{args.processes} processes per cell")
    for (arch, opts, dtype), runs in results.items():
        for i, phase in enumerate(("forward", "backward")):
            old = [r["rb_old"][i] for r in runs]
            new = [r["rb_new"][i] for r in runs]
            ratios = sorted(n / o for n, o in zip(new, old))
            print(f"{arch} {opts} {dtype} {phase:8s}  old {statistics.median(old):.2f}  new {statistics.median(new):.2f}"
                  f"  new/old {statistics.median(ratios):.2f} [{ratios[0]:.2f}-{ratios[-1]:.2f}]")


if __name__ == "__main__":
    main()
