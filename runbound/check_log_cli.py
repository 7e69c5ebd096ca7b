"""`runbound check-log LOG`: the command around `runbound.model.check.log` (kept out of
`runbound/cli.py` so that file only names it), and what it shares with the other commands
(`runbound/cli.py` imports it from here): how a bad file's error is worded."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from rich.progress import BarColumn, DownloadColumn, Progress, TimeElapsedColumn

from runbound.model.check import timeline
from runbound.model.check.log import LogError, LogVerdict, check_log, report
from runbound.model.errors import RunboundError
from runbound.model.files import write_json


def run(args: argparse.Namespace) -> int:
    """Exit 0 on a pass, 1 on a failure or (without --allow-unknown) an unknown, 2 on a
    log that is not of the format."""
    try:
        verdict = _check(args)
    except (LogError, OSError, UnicodeDecodeError) as error:
        where = "" if isinstance(error, OSError) else f"{args.log}: "  # OSError names it
        text = (f"not UTF-8 text, so not a log of specs/log.md ({error.reason} at byte "
                f"{error.start})" if isinstance(error, UnicodeDecodeError) else said(error))
        print(f"runbound check-log: error: {where}{text}", file=sys.stderr)
        return 2
    written = []
    if verdict.verdict == "fail":
        history = timeline.from_log(verdict, str(args.log))
        written = [str(p) for p in timeline.write(history, args.out, args.log.stem)]
    if args.json == "-":  # `--json` alone: the JSON is the output
        print(json.dumps(as_json(verdict, written), indent=1))
    else:
        print("\n".join(report(verdict)))
        for path in written:
            print(f"wrote {path}")
        if isinstance(args.json, Path):
            write_json(args.json, as_json(verdict, written))
            print(f"wrote {args.json}")
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


def said(error: BaseException) -> str:
    """An error in a user's words: a file's fault (run "*") without the run it names none
    of, an OSError as its reason and file."""
    if isinstance(error, RunboundError) and error.run_id == "*":
        return error.rule if error.state == "n/a" else f"{error.state}: {error.rule}"
    if isinstance(error, OSError) and error.strerror:
        return f"{error.filename}: {error.strerror}" if error.filename else error.strerror
    return str(error)
