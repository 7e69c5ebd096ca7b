"""The `runbound` command."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from pathlib import Path


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="runbound", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)

    verify = sub.add_parser("verify", help="check every bundled store against the model")
    verify.add_argument("--json", type=Path, help="also write the verdicts to this file")
    verify.add_argument("--store", action="append", default=[],
                        help="only stores whose name contains this (repeatable)")
    verify.add_argument("--invariant", action="append", default=[],
                        help="only this invariant, e.g. I4 (repeatable)")
    verify.add_argument("--broken", action="store_true",
                        help="also the deliberately broken stores, to see the checker fail")
    verify.add_argument("--examples", type=int, help="examples per (store, invariant)")

    spec = sub.add_parser("spec", help="regenerate the generated parts of specs/")
    spec.add_argument("--check", action="store_true",
                      help="exit 1 if specs/ differs from what the model generates")

    args = parser.parse_args(argv)
    if args.command == "verify":
        return _verify(args)
    return _spec(args)


def _verify(args: argparse.Namespace) -> int:
    from model.stateful import machine_settings
    from model.verify import check_store, console, render, write_json
    from reference.catalog import BROKEN, STORES

    entries = [*STORES, *(BROKEN if args.broken else ())]
    if args.store:
        entries = [e for e in entries if any(s in e.name for s in args.store)]
    overrides = {"database": None}
    if args.examples:
        overrides["max_examples"] = args.examples
    settings = machine_settings(**overrides)
    out = console()
    reports = []
    for entry in entries:
        out.print(f"checking [bold]{entry.name}[/]: {entry.about}")
        reports.append(check_store(entry.name, entry.factory, expected=entry.expected,
                                   invariants=args.invariant or None, settings=settings))
    render(reports, out)
    if args.json:
        write_json(reports, args.json)
        out.print(f"wrote {args.json}")
    surprises = [r.name for r in reports if not r.as_expected]
    if surprises:
        out.print(f"[red bold]not as expected:[/] {', '.join(surprises)}")
        return 1
    return 0


def _spec(args: argparse.Namespace) -> int:
    from model.diagram import SPEC_FILE, render_lifecycle_section, splice

    current = SPEC_FILE.read_text()
    wanted = splice(current, render_lifecycle_section())
    if args.check:
        if current != wanted:
            print(f"{SPEC_FILE} is out of date: run `runbound spec`", file=sys.stderr)
            return 1
        return 0
    SPEC_FILE.write_text(wanted)
    print(f"wrote {SPEC_FILE}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
