"""runbound: hold a run store to its executable specification.

Every command that gives verdicts exits 0 when all hold, 1 when one does not or could
not be decided (unknown is never a pass), 2 on a usage error (a bad argument, a factory
that does not load)."""

from __future__ import annotations

import argparse
import json
import math
import os
import sys
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import replace
from pathlib import Path

from rich.console import Console
from rich.progress import Progress

from runbound import __version__
from runbound import seeds_report as report
from runbound.catalog import BROKEN, STORES
from runbound.check_log_cli import run
from runbound.model.calls import policy_to_json
from runbound.model.check import counterexample as cx
from runbound.model.check import explore, explore_kernel
from runbound.model.check.conformance import (
    BadFactorySpec,
    FactoryFailed,
    capabilities_of,
    conform,
    load_factory,
    write_counterexamples,
)
from runbound.model.check.counterexample import Counterexample
from runbound.model.check.process import ExecFactory
from runbound.model.check.profiles import (
    PROFILES,
    VERIFY_EXAMPLES,
    ProfileError,
    machine_settings,
    profile_name,
)
from runbound.model.check.replay import (
    BadHistory,
    history_report,
    read_history,
    replay_file,
    replay_history,
)
from runbound.model.check.verify import Check, check_many, console, render, write_json
from runbound.model.diagram import SPEC_FILE, render_lifecycle_section, splice
from runbound.model.errors import RunboundError
from runbound.model.files import SPECS
from runbound.model.invariants import INVARIANTS
from runbound.model.lifecycle import TRANSITIONS, Status
from runbound.model.policy import Policy

#: the names of `runbound.model.check.explore.PLANTED` (kept here so `--help` needs no import)
PLANTED_BUGS = ("evicts-active", "admits-one-more", "idle-worker", "ignores-the-mark")


def _epilog() -> str:
    return (f"stores (verify --store): {', '.join(e.name for e in (*STORES, *BROKEN))}\n"
            f"invariants (--invariant): {', '.join(INVARIANTS)}\n"
            f"profiles (RUNBOUND_PROFILE): {', '.join(PROFILES)}")


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="runbound", description=__doc__, epilog=_epilog(),
        formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--version", action="version", version=f"runbound {__version__}")
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
    verify.add_argument("--random", action="store_true",
                        help="a fresh random search (default: derandomized, reproducible)")
    verify.add_argument("--jobs", type=int, default=os.cpu_count() or 1,
                        help="(store, invariant) pairs checked at once (default: CPUs)")

    conform = sub.add_parser("conform", help="hold your own store to the model")
    conform.add_argument("factory", nargs="?",
                         help="package.module:factory, (policy, clock) -> store")
    conform.add_argument("--exec", dest="exec_command", metavar="COMMAND",
                         help="the store is this program, speaking specs/wire.md on "
                              "stdin/stdout (instead of a factory)")
    conform.add_argument("--timeout", type=float, metavar="SECONDS",
                         help="with --exec: real seconds to wait for each reply before "
                              "the store is reported hung (rule X2; default 10)")
    conform.add_argument("--out", type=Path, default=Path("runbound-counterexamples"),
                         help="where to write counterexamples (JSON traces, pytest tests)")
    conform.add_argument("--examples", type=int, help="examples per invariant")
    conform.add_argument("--invariant", action="append", default=[],
                         help="only this invariant (repeatable)")
    conform.add_argument("--jobs", type=int, default=os.cpu_count() or 1,
                         help="invariants checked at once, in processes (default: CPUs)")
    conform.add_argument("--fail-fast", action="store_true",
                         help="stop at the first invariant broken")
    conform.add_argument("--json", type=Path, help="also write the verdicts to this file")
    conform.add_argument("--allow-unknown", action="store_true",
                         help="exit 0 even if some checks could not decide (unknown)")

    replay = sub.add_parser("replay", help="re-run a counterexample trace against a store, "
                            "or check a recorded history again against the model")
    replay.add_argument("trace", type=Path, help="a counterexample (JSON), or a "
                        "NAME.history.json of an I19 failure or a failing log")
    replay.add_argument("factory", nargs="?", help="package.module:factory (default: the "
                        "trace's own; none for a history, which no store runs)")

    seeds = sub.add_parser("seeds", help="write specs/seeds.md from a verify --json file")
    seeds.add_argument("--from", dest="source", type=Path, default=Path("out/verify.json"))
    seeds.add_argument("--check", action="store_true",
                       help="exit 1 if specs/seeds.* differ from what this code writes")

    spec = sub.add_parser("spec", help="regenerate the generated parts of specs/")
    spec.add_argument("--check", action="store_true",
                      help="exit 1 if specs/ differs from what the model generates")

    explore = sub.add_parser("explore", help="every state of a small world, breadth first")
    explore.add_argument("--ids", type=int, help="run ids (default 3)")
    explore.add_argument("--horizon", type=int, help="clock ticks (default 2)")
    explore.add_argument("--interval", type=int, help="worker interval, ticks (default 1)")
    explore.add_argument("--events", type=int, help="appends tried per run (default 1)")
    explore.add_argument("--policy", help="the policy, as JSON (fields of "
                         "runbound.model.policy.Policy; default: "
                         "runbound.model.check.explore.World's)")
    explore.add_argument("--no-symmetry", action="store_true", help="name every run id")
    explore.add_argument("--plant", choices=PLANTED_BUGS,
                         help="explore a deliberately broken model")
    explore.add_argument("--allow-unreached", action="append", default=[], metavar="NAME",
                         help="a sometimes-property this world may leave unreached "
                              "(repeatable; default: every one must be reached)")
    explore.add_argument("--max-states", type=int, default=2_000_000)
    explore.add_argument("--json", type=Path, help="also write the result to this file")
    explore.add_argument("--oracle", action="store_true",
                         help="explore through the spec itself (check/explore.py), not "
                              "the kernel (check/explore_kernel.py) held equal to it")
    explore.add_argument("--replay", type=int, metavar="DEPTH",
                         help="also replay every path up to DEPTH calls against --store")
    explore.add_argument("--store", default="memory",
                         help="a store of `runbound verify` (default memory), or "
                              "package.module:factory")

    check_log = sub.add_parser("check-log", help="check a recorded log against the model")
    check_log.add_argument("log", type=Path, help="a log of specs/log.md")
    check_log.add_argument("--json", action="store_true", help="print the verdict as JSON")
    check_log.add_argument("--out", type=Path, default=Path("runbound-check-log"),
                           help="where a failure's timeline is written (HTML, Porcupine)")
    check_log.add_argument("--allow-unknown", action="store_true",
                           help="exit 0 if the check could not decide (unknown)")

    args = parser.parse_args(argv)
    try:
        return _dispatch(args)
    except ProfileError as error:  # a bad RUNBOUND_PROFILE is a usage error, not a crash
        print(f"runbound {args.command}: {error}", file=sys.stderr)
        return 2


def _dispatch(args: argparse.Namespace) -> int:
    if args.command == "check-log":

        return run(args)
    if args.command == "explore":
        return _explore(args)
    if args.command == "verify":
        return _verify(args)
    if args.command == "seeds":
        return _seeds(args)
    if args.command == "conform":
        return _conform(args)
    if args.command == "replay":
        return _replay(args)
    return _spec(args)


def _conform(args: argparse.Namespace) -> int:

    if (args.factory is None) == (args.exec_command is None):
        print("runbound conform: give package.module:factory or --exec COMMAND",
              file=sys.stderr)
        return 2
    if args.timeout is not None and (args.exec_command is None
                                     or not 0 < args.timeout < math.inf):
        print("runbound conform: --timeout needs --exec and a number of seconds > 0",
              file=sys.stderr)
        return 2
    if args.exec_command is not None:  # the same path, with a factory of processes
        args.factory = f"exec:{args.exec_command}"
    unknown_ids = [i for i in args.invariant if i not in INVARIANTS]
    if unknown_ids:
        print(f"runbound conform: no such invariant: {', '.join(unknown_ids)} (one of "
              f"{', '.join(INVARIANTS)})", file=sys.stderr)
        return 2
    try:
        factory = load_factory(args.factory)
        if isinstance(factory, ExecFactory) and args.timeout is not None:
            factory.timeout = args.timeout  # before any process is started
        caps = capabilities_of(factory)
    except BadFactorySpec as error:
        print(f"runbound conform: {error}", file=sys.stderr)
        return 2
    except FactoryFailed as error:
        print(f"runbound conform: {args.factory}: {error}", file=sys.stderr)
        return 2
    out = console()
    out.print(f"conformance of [bold]{args.factory}[/]: {caps}")

    total = len(args.invariant or INVARIANTS)
    done = 0

    def landed(check: Check) -> None:
        nonlocal done
        done += 1
        bar(done)
        line = f"  [{done}/{total}] {check.invariant}: {check.verdict} ({check.seconds:.1f}s)"
        if check.verdict == "fail":
            line += f": {check.differed}"
        elif check.verdict == "unknown":
            line += f": {check.note}"
        out.print(line, highlight=False, markup=False)

    try:
        with _bar(out, "conform", total) as bar:
            report = conform(factory, capabilities=caps, invariants=args.invariant or None,
                             examples=args.examples, jobs=args.jobs,
                             fail_fast=args.fail_fast,
                             name=args.factory.rsplit(":", 1)[-1], progress=landed)
    except FactoryFailed as error:
        print(f"runbound conform: {args.factory}: {error}", file=sys.stderr)
        return 2
    render([report], out)
    if args.json:
        write_json([report], args.json)
        out.print(f"wrote {args.json}")
    for path in write_counterexamples(report, args.factory, args.out):
        out.print(f"wrote {path}")
    verdicts = [c.verdict for c in report.checks]
    unknown = report.unknown
    out.print(f"{verdicts.count('pass')} pass, {verdicts.count('fail')} fail, "
              f"{len(unknown)} unknown, {verdicts.count('skipped')} skipped (declared)"
              + "".join(f"\n  unknown {c.invariant}: {c.note}" for c in unknown),
              highlight=False, markup=False)
    if report.failed:
        out.print(f"[red bold]{len(report.failed)} invariant(s) broken:[/] "
                  f"{', '.join(i for i in INVARIANTS if i in report.failed)}")
        return 1
    if unknown and not args.allow_unknown:
        out.print("[yellow bold]not shown to conform:[/] some checks could not decide "
                  "(--allow-unknown to accept that)")
        return 1
    out.print("[green]conforms[/] on every invariant checked")
    return 0


@contextmanager
def _bar(out: Console, what: str, total: int) -> Iterator[Callable[[int], None]]:
    """A progress bar on a terminal (nothing elsewhere: the lines say "k/n" there)."""
    with Progress(*Progress.get_default_columns(), console=out, transient=True,
                  disable=not out.is_terminal) as progress:
        task = progress.add_task(what, total=total)
        yield lambda done: progress.update(task, completed=done)


def _explore(args: argparse.Namespace) -> int:


    try:
        world = explore.World(symmetry=not args.no_symmetry)
        if args.policy is not None:
            world = replace(world, policy=Policy(**json.loads(args.policy)))
        sizes = {"ids": args.ids, "horizon": args.horizon, "interval": args.interval,
                 "events": args.events}
        world = replace(world, **{k: v for k, v in sizes.items() if v is not None})
        unknown = sorted(set(args.allow_unreached) - explore.SOMETIMES.keys())
        if unknown:
            raise ValueError(f"no sometimes-property {', '.join(unknown)}; they are: "
                             f"{', '.join(explore.SOMETIMES)}")
    except (ValueError, TypeError, RunboundError) as error:
        print(f"runbound explore: bad world: {error}", file=sys.stderr)
        return 2
    print(f"world: {world.ids} run ids, clock 0..{world.horizon}, worker every "
          f"{world.interval}s, {world.events} append(s) per run, policy "
          f"{json.dumps(policy_to_json(world.policy))}")
    if args.plant:
        print(f"planted bug: {args.plant}: {explore.PLANTED[args.plant][0]}")
    if args.oracle:
        print("engine: oracle (the spec itself, runbound.model.check.explore)")
        result = explore.explore(world, plant=args.plant, max_states=args.max_states)
    else:
        print(f"engine: kernel ({explore_kernel.engine()}, runbound.model.check.explore_kernel)")
        try:
            result = explore_kernel.explore(world, plant=args.plant,
                                            max_states=args.max_states)
        except ValueError as error:  # a world past what the kernel packs
            print(f"runbound explore: bad world: {error}", file=sys.stderr)
            return 2
    print(f"{result.states:,} states ({result.named_states:,} with named ids: symmetry "
          f"reduction x{result.reduction:.2f}), {result.transitions:,} transitions, depth "
          f"{result.depth}, {result.seconds:.2f}s: {result.states_per_second:,.0f} states/s, "
          f"{result.transitions / max(result.seconds, 1e-9):,.0f} transitions/s")
    cov = result.coverage
    table = {(a, b) for a, targets in TRANSITIONS.items() for b in targets}
    print(f"coverage: statuses {len(cov.statuses)}/{len(Status)}, table edges "
          f"{len(cov.edges & table)}/{len(table)}, (call, outcome) pairs "
          f"{len(explore.OUTCOMES) - len(cov.missing_outcomes)}/{len(explore.OUTCOMES)}")
    for (op, outcome), n in sorted(cov.outcomes.items()):
        print(f"  {op:22} {outcome:18} {n:>10,}")
    for op, outcome in cov.missing_outcomes:
        print(f"  {op:22} {outcome:18}      never")
    if result.violation is not None:
        v = result.violation
        print(f"\nshortest path ({len(v.path)} steps):")
        for line in explore.show_path(v.path):
            print(f"  {line}")
        found = result.counterexample
        assert found is not None
        print(cx.render(found))
        if args.json:
            _explore_json(args, world, result, [], 1)
        return 1
    if not result.complete:
        print(f"incomplete: stopped at --max-states {args.max_states:,}; the states not "
              "reached were not checked (unknown, not a pass)")
        return 1
    print("every invariant and E1, E2 hold in every state")
    print(f"sometimes: {len(result.reached)}/{len(explore.SOMETIMES)} reached")
    vacuous = [name for name in result.unreached if name not in args.allow_unreached]
    for name in result.unreached:
        allowed = " (allowed)" if name not in vacuous else ""
        print(f"vacuous: never reached {name}: {explore.SOMETIMES[name].about}{allowed}")
    code = 0
    if args.replay is not None:
        by_name = {e.name: e.factory for e in (*STORES, *BROKEN)}
        factory = by_name.get(args.store) or load_factory(args.store)
        caps = capabilities_of(factory)
        replayed = explore.replay_paths(world, factory, args.replay, caps)
        left_out = (f" ({replayed.skipped:,} left out: they call what {caps} lacks)"
                    if replayed.skipped else "")
        print(f"replayed {replayed.programs:,} programs against {args.store} in "
              f"{replayed.seconds:.1f}s{left_out}")
        if replayed.failure is not None:
            print(replayed.failure[0])
            code = 1
        else:
            print(f"{args.store} agrees with the model on every path up to {args.replay} "
                  "calls")
    if args.json:
        _explore_json(args, world, result, vacuous, code)
    if vacuous:  # last, so it is what a reader sees
        print(f"vacuous: this world checks nothing where it never reaches "
              f"{', '.join(vacuous)}: widen it, or pass --allow-unreached NAME")
        code = 1
    return code


def _explore_json(args: argparse.Namespace, world: explore.World, result: explore.Result,
                  vacuous: list[str], code: int) -> None:
    """`explore --json`: the verdict, the world and what it covered, as data."""
    verdict = ("fail" if result.violation is not None or (code == 1 and not vacuous)
               else "unknown" if not result.complete or vacuous else "pass")
    v = result.violation
    data = {
        "verdict": verdict, "plant": args.plant,
        "world": {"ids": world.ids, "horizon": world.horizon, "interval": world.interval,
                  "events": world.events, "symmetry": world.symmetry,
                  "policy": policy_to_json(world.policy)},
        "states": result.states, "named_states": result.named_states,
        "transitions": result.transitions, "depth": result.depth,
        "complete": result.complete, "seconds": result.seconds,
        "violation": None if v is None else {
            "property": v.property, "message": v.message,
            "path": list(explore.show_path(v.path))},
        "counterexample": None if result.counterexample is None
        else cx.to_json(result.counterexample),
        "reached": sorted(result.reached), "unreached": result.unreached,
        "vacuous": vacuous,
        "missing_outcomes": [list(p) for p in result.coverage.missing_outcomes],
    }
    args.json.parent.mkdir(parents=True, exist_ok=True)
    args.json.write_text(json.dumps(data, indent=2) + "\n")


def _replay(args: argparse.Namespace) -> int:
    """A program: exit 1 if the store still breaks its invariant, 0 if it runs clean. A
    history (checked again against the model, not re-run: a factory is a usage error):
    1 if it still fails or cannot be decided, 0 if an order of its calls fits."""
    try:
        history = read_history(args.trace)
        if history is not None:
            if args.factory:
                raise BadHistory(str(args.trace), "a history is checked again against the "
                                 "model, not re-run on a store: give no factory")
            replayed = replay_history(history)
            print("\n".join(history_report(replayed)))
            return 0 if replayed.verdict == "pass" else 1
        found = cx.read(args.trace)
        factory = load_factory(args.factory) if args.factory else None
        violation = replay_file(args.trace, factory)
    except (cx.BadCounterexample, BadHistory, BadFactorySpec, OSError) as error:
        print(f"runbound replay: {error}", file=sys.stderr)
        return 2
    if violation is None:
        print(f"{found.invariant}: the program runs clean")
        return 0
    print(cx.render(Counterexample.of_violation(violation)))
    return 1


def _checkout() -> bool:
    """Is `specs/` a runbound checkout's (writable, under git), not a wheel's copy?"""
    return (SPECS.resolve().parent / "pyproject.toml").is_file()


def _seeds(args: argparse.Namespace) -> int:
    if not args.source.is_file():
        print(f"runbound seeds: no verdicts at {args.source}: write them first with "
              f"`runbound verify --json {args.source}`", file=sys.stderr)
        return 2
    if not args.check and not _checkout():
        print("runbound seeds: writes specs/ of a runbound checkout; this runbound is "
              "installed (its specs/ are the package's copy): run it in a clone",
              file=sys.stderr)
        return 2
    if args.check:
        errors, notes = report.differences(args.source)
        for line in notes:
            print(f"note: {line}")
        for line in errors:
            print(f"specs/seeds.* differ from what this code writes: {line}",
                  file=sys.stderr)
        if errors:
            print(f"run `runbound seeds --from {args.source}` to write them",
                  file=sys.stderr)
        else:
            print("specs/seeds.md and specs/seeds.json: as this code writes them, every "
                  "verdict and counterexample reproduced")
        return 1 if errors else 0
    rows = report.write(args.source)
    print(f"wrote specs/seeds.md and specs/seeds.json ({len(rows)} rows)")
    return 0


def _verify(args: argparse.Namespace) -> int:
    entries = [*STORES, *(BROKEN if args.broken else ())]
    if args.store:
        entries = [e for e in entries if any(s in e.name for s in args.store)]
        if not entries:
            print(f"runbound verify: no store matches {', '.join(args.store)}; stores: "
                  f"{', '.join(e.name for e in (*STORES, *BROKEN))}", file=sys.stderr)
            return 2

    unknown_ids = [i for i in args.invariant if i not in INVARIANTS]
    if unknown_ids:
        print(f"runbound verify: no such invariant: {', '.join(unknown_ids)}",
              file=sys.stderr)
        return 2
    # Derandomized: the same code gives the same table, so verdicts can be compared run
    # to run (`runbound seeds --check`); --random explores afresh each time.
    overrides: dict[str, object] = {"database": None, "derandomize": not args.random}
    overrides["max_examples"] = args.examples or VERIFY_EXAMPLES[profile_name()]
    settings = machine_settings(**overrides)
    out = console()
    for entry in entries:
        out.print(f"[bold]{entry.name}[/]: {entry.about}")

    total = len(entries) * len(args.invariant or INVARIANTS)
    done = 0
    with _bar(out, "verify", total) as bar:

        def progress(name: str, check: Check) -> None:
            nonlocal done
            done += 1
            bar(done)
            out.print(f"  [{done}/{total}] {name} {check.invariant}: {check.verdict} "
                      f"({check.seconds:.1f}s)", highlight=False, markup=False)

        reports = check_many([(e.name, e.factory, e.expected, e.exact) for e in entries],
                             invariants=args.invariant or None, settings=settings,
                             jobs=args.jobs, progress=progress)
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
    if not args.check and not _checkout():
        print("runbound spec: writes specs/ of a runbound checkout; this runbound is "
              "installed: `runbound spec --check` compares its packaged copy",
              file=sys.stderr)
        return 2
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
