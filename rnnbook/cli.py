"""Command line: ``python -m rnnbook <command>`` (also installed as ``rnnbook``)."""
from __future__ import annotations

import argparse
import sys


def main(argv=None) -> int:
    from .demo import DEFAULTS

    parser = argparse.ArgumentParser(prog="python -m rnnbook",
                                     description="rnnbook: an executable textbook of recurrent networks")
    sub = parser.add_subparsers(dest="command", required=True)

    demo = sub.add_parser("demo", help="train a character-level model on the bundled Shakespeare")
    demo.add_argument("--cell", choices=["lstm", "gru", "rnn"], default=DEFAULTS["cell"])
    demo.add_argument("--backend", choices=["numpy", "numba", "cupy"], default=None,
                      help="default: RNNBOOK_BACKEND or numpy")
    demo.add_argument("--steps", type=int, default=DEFAULTS["steps"])
    demo.add_argument("--hidden", type=int, default=DEFAULTS["hidden"])
    demo.add_argument("--seq-len", type=int, default=DEFAULTS["seq_len"])
    demo.add_argument("--batch", type=int, default=DEFAULTS["batch"])
    demo.add_argument("--lr", type=float, default=DEFAULTS["lr"])
    demo.add_argument("--seed", type=int, default=DEFAULTS["seed"])
    demo.add_argument("--dtype", choices=["float32", "float64"], default=DEFAULTS["dtype"])
    demo.add_argument("--sample-every", type=int, default=DEFAULTS["sample_every"])
    demo.add_argument("--temperature", type=float, default=DEFAULTS["temperature"])
    demo.add_argument("--out", default=DEFAULTS["out"], help="folder for the loss-curve PNG")
    demo.add_argument("--no-progress", action="store_true", help="hide the progress bar")

    sub.add_parser("coverage", help="print which architecture/operation/backend combinations exist")
    sub.add_parser("backends", help="list the backends usable here (and why others are not)")

    from .book.cli import add_parser as add_book_parser
    add_book_parser(sub)

    args = parser.parse_args(argv)
    if args.command == "demo":
        from .demo import run_demo
        run_demo(cell=args.cell, backend=args.backend, steps=args.steps, hidden=args.hidden, seq_len=args.seq_len,
                 batch=args.batch, lr=args.lr, seed=args.seed, dtype=args.dtype, sample_every=args.sample_every,
                 temperature=args.temperature, out=args.out, progress=not args.no_progress)
    elif args.command == "coverage":
        from .dispatch import coverage_table
        print(coverage_table())
    elif args.command == "book":
        from .book.cli import run as run_book
        return run_book(args)
    elif args.command == "backends":
        from .dispatch import available_backends, unavailable_backends
        print("usable here:", ", ".join(available_backends()))
        for name, why in unavailable_backends().items():
            print(f"not usable: {name}: {why}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
