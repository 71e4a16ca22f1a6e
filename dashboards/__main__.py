"""``python -m dashboards [--check] [--out DIR] [--with-pending]``: regenerate the dashboard JSON."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from dashboards import GENERATED, pending, render_all


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m dashboards", description=__doc__)
    parser.add_argument("--out", type=Path, default=GENERATED, help="folder to write (default: %(default)s)")
    parser.add_argument("--check", action="store_true", help="write nothing; exit 1 if a file is not current")
    parser.add_argument(
        "--with-pending", action="store_true",
        help="also render the panels whose metrics have no values yet (a preview; never commit it)",
    )
    args = parser.parse_args(argv)
    if args.with_pending and args.out.resolve() == GENERATED:
        parser.error("--with-pending needs --out elsewhere: dashboards/generated holds only shipped panels")
    try:
        files = render_all(include_pending=args.with_pending)
    except ModuleNotFoundError as exc:
        print(f"error: {exc.name} is missing; install the dev extras: pip install -e '.[dev]'", file=sys.stderr)
        return 2
    stale = [name for name, text in files.items() if not (args.out / name).is_file()
             or (args.out / name).read_text() != text]
    if args.check:
        for name in stale:
            print(f"{args.out / name} is not current: run python -m dashboards", file=sys.stderr)
        return 1 if stale else 0
    args.out.mkdir(parents=True, exist_ok=True)
    for name, text in files.items():
        (args.out / name).write_text(text)
        print(f"{'wrote' if name in stale else 'unchanged'} {args.out / name}")
    for uid, panels in pending().items():
        for title, why in panels:
            print(f"not shipped in {uid}: {title} ({why})", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
