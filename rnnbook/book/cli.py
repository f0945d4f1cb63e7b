"""``python -m rnnbook book <command>``: build, student, grade, run, lint, list."""
from __future__ import annotations

import sys
import time
from pathlib import Path


def add_parser(sub) -> None:
    book = sub.add_parser("book", help="the book's chapters: build notebooks, the student edition, grade, run")
    bsub = book.add_subparsers(dest="book_command", required=True)

    def chapters_args(p, what):
        p.add_argument("chapters", nargs="*", help=f"chapters to {what} (number, NN_slug or path; default: all)")
        p.add_argument("--chapters-dir", default=None, help="folder of the chapter sources (default: ./chapters)")

    p = bsub.add_parser("build", help="write every chapter as a .ipynb notebook (for readers)")
    chapters_args(p, "build")
    p.add_argument("--out", default="build/book", help="output folder (default: build/book)")
    p.add_argument("--execute", action="store_true", help="run each notebook so that it carries its outputs")
    p.add_argument("--full", action="store_true", help="with --execute: full sizes (default: RNNBOOK_SMALL=1)")
    p.add_argument("--timeout", type=int, default=1800, help="with --execute: seconds per cell (default: 1800)")

    p = bsub.add_parser("student", help="write the student edition (solutions replaced by stubs)")
    chapters_args(p, "convert")
    p.add_argument("--out", default="build/student", help="output folder (default: build/student)")
    p.add_argument("--format", choices=["ipynb", "py"], default="ipynb")

    p = bsub.add_parser("grade", help="grade a student's notebook or module, with diagnostics per term")
    p.add_argument("file", help="the student's .ipynb or .py")
    p.add_argument("--exercise", action="append", default=None, metavar="ID",
                   help="grade only this exercise (repeatable), e.g. --exercise 4.1")
    p.add_argument("--chapter", type=int, default=None,
                   help="grade every exercise of this chapter (default: from the file name's NN_ prefix)")
    p.add_argument("--execute", action="store_true",
                   help="run the whole notebook at small size in a kernel first (default: run only its "
                        "imports, definitions and constants)")

    p = bsub.add_parser("run", help="execute chapters top to bottom in a kernel, as CI does")
    chapters_args(p, "run")
    p.add_argument("--full", action="store_true", help="full sizes (default: the small size of CI)")
    p.add_argument("--student", action="store_true", help="run the student edition instead")
    p.add_argument("--timeout", type=int, default=1800, help="seconds per cell (default: 1800)")

    p = bsub.add_parser("lint", help="check chapters against the conventions of chapters/README.md")
    chapters_args(p, "check")

    p = bsub.add_parser("list", help="list the chapters and the registered exercises")
    p.add_argument("--chapters-dir", default=None)


def _chapters(args):
    from . import notebooks
    if args.chapters:
        return [notebooks.resolve(c, args.chapters_dir) for c in args.chapters]
    found = notebooks.list_chapters(args.chapters_dir)
    if not found:
        raise SystemExit(f"no chapters (NN_slug.py) in {notebooks.chapters_dir(args.chapters_dir)}")
    return found


def run(args) -> int:
    from . import editions, grading, notebooks
    cmd = args.book_command
    try:
        if cmd == "build":
            out = Path(args.out)
            out.mkdir(parents=True, exist_ok=True)
            for ch in _chapters(args):
                nb = notebooks.read(ch)
                if args.execute:
                    nb = notebooks.execute(nb, small=not args.full, timeout=args.timeout, name=ch.name)
                print(f"wrote {notebooks.write(nb, out / ch.stem, 'ipynb')}")
        elif cmd == "student":
            for ch in _chapters(args):
                print(f"wrote {editions.build_student(ch, Path(args.out), args.format)}")
        elif cmd == "grade":
            return grading.main_grade(args.file, args.exercise, args.chapter, args.execute)
        elif cmd == "run":
            failed = 0
            for ch in _chapters(args):
                nb = notebooks.read(ch)
                if args.student:
                    nb = editions.student_notebook(nb, ch.name)
                start = time.perf_counter()
                try:
                    notebooks.execute(nb, small=not args.full, timeout=args.timeout, name=ch.name)
                    print(f"ok      {ch.name}  ({time.perf_counter() - start:.1f} s)")
                except notebooks.ChapterError as exc:
                    failed += 1
                    print(f"FAILED  {ch.name}  ({time.perf_counter() - start:.1f} s)\n{exc}")
            return 1 if failed else 0
        elif cmd == "lint":
            bad = 0
            for ch in _chapters(args):
                problems = editions.lint_chapter(ch)
                bad += bool(problems)
                print(f"{'ok  ' if not problems else 'BAD '} {ch.name}")
                for p in problems:
                    print(f"     - {p}")
            return 1 if bad else 0
        elif cmd == "list":
            reg = grading.registry()
            for ch in notebooks.list_chapters(args.chapters_dir):
                print(ch.name)
                for e in reg.values():
                    if e.chapter == notebooks.chapter_number(ch):
                        print(f"  Exercise {e.id}  {e.function}()  {e.title}")
    except (notebooks.ChapterError, editions.MarkerError, LookupError, ValueError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    return 0
