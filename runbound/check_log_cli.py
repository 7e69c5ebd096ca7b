"""`runbound check-log LOG`: the command around `runbound.model.check.log` (kept out of
`runbound/cli.py` so that file only names it)."""

from __future__ import annotations

import argparse
import json
import sys

from rich.progress import BarColumn, DownloadColumn, Progress, TimeElapsedColumn

from runbound.model.check import timeline
from runbound.model.check.log import LogError, LogVerdict, check_log, report


def run(args: argparse.Namespace) -> int:
    """Exit 0 on a pass, 1 on a failure or (without --allow-unknown) an unknown, 2 on a
    log that is not of the format."""
    try:
        verdict = _check(args)
    except (LogError, OSError) as error:
        print(f"runbound check-log: {args.log}: {error}", file=sys.stderr)
        return 2
    written = []
    if verdict.verdict == "fail":
        history = timeline.from_log(verdict, str(args.log))
        written = [str(p) for p in timeline.write(history, args.out, args.log.stem)]
    if args.json:
        print(json.dumps(as_json(verdict, written), indent=1))
    else:
        print("\n".join(report(verdict)))
        for path in written:
            print(f"wrote {path}")
        if verdict.verdict == "unknown" and not args.allow_unknown:
            print("not shown to fit the model: the check could not decide "
                  "(--allow-unknown to accept that)")
    if verdict.verdict == "pass" or (verdict.verdict == "unknown" and args.allow_unknown):
        return 0
    return 1


def _check(args: argparse.Namespace) -> LogVerdict:
    if not sys.stderr.isatty():
        return check_log(args.log)
    size = args.log.stat().st_size  # progress by bytes read: the line count is unknown
    with Progress("checking", BarColumn(), DownloadColumn(), TimeElapsedColumn(),
                  transient=True) as bar:
        task = bar.add_task("check", total=size)
        return check_log(args.log, lambda read: bar.update(task, completed=read))


def as_json(verdict: LogVerdict, written: list[str]) -> dict[str, object]:
    return {"verdict": verdict.verdict, "calls": verdict.calls, "note": verdict.note,
            "culprit": None if verdict.culprit is None else verdict.culprit.line,
            "window": [json.loads(e.text) | {"line": e.line} for e in verdict.window],
            "overlapping": verdict.overlapping, "max_running": verdict.max_running,
            "max_configurations": verdict.max_configurations, "written": written}
