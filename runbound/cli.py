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
from typing import NoReturn

from rich.console import Console
from rich.progress import Progress, SpinnerColumn, TextColumn, TimeElapsedColumn

from runbound import __version__
from runbound import seeds_report as report
from runbound.catalog import BROKEN, STORES
from runbound.check_log_cli import run, said
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
from runbound.model.check.verify import Check, check_many, console, render
from runbound.model.check.verify import to_json as verdicts_json
from runbound.model.diagram import SPEC_FILE, render_lifecycle_section, splice
from runbound.model.errors import PolicyError, RunboundError, StoreProcessError
from runbound.model.files import SPECS, write_json
from runbound.model.invariants import INVARIANTS
from runbound.model.lifecycle import TRANSITIONS, Status
from runbound.model.policy import Policy
from runbound.model.protocol import Capabilities, StoreFactory

#: the names of `runbound.model.check.explore.PLANTED` (kept here so `--help` needs no import)
PLANTED_BUGS = ("evicts-active", "admits-one-more", "idle-worker", "ignores-the-mark")


class UsageError(Exception):
    """A bad argument found after parsing: one line on stderr, exit 2."""


class _Parser(argparse.ArgumentParser):
    """argparse, with a usage error on one line (its usage block above it would hide the
    line that says what is wrong; `--help` shows the usage)."""

    def error(self, message: str) -> NoReturn:
        self.exit(2, f"{self.prog}: error: {message} (see {self.prog} --help)\n")


def _count(least: int) -> Callable[[str], int]:
    """An argparse type: a whole number >= `least` (0 examples is not "the default")."""
    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"not a whole number: {text!r}") from None
        if value < least:
            raise argparse.ArgumentTypeError(f"must be at least {least}, got {value}")
        return value
    return parse


def positive(unit: str) -> Callable[[str], float]:
    """An argparse type: a finite number > 0 of `unit` ("seconds"; "" for a factor)."""
    what = f"a number of {unit}" if unit else "a number"

    def parse(text: str) -> float:
        try:
            value = float(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"not {what}: {text!r}") from None
        if not 0 < value < math.inf:
            raise argparse.ArgumentTypeError(f"must be {what} > 0, got {text}")
        return value
    return parse


def _output(is_dir: bool) -> Callable[[str], Path]:
    """An argparse type: a path the command can write its file (or, `is_dir`, its
    directory) to, checked before the work rather than failing after it."""
    def parse(text: str) -> Path:
        path = Path(text)
        if path.exists() and path.is_dir() != is_dir:
            raise argparse.ArgumentTypeError(
                f"{text} is {'a file' if is_dir else 'a directory'}, not "
                f"{'a directory' if is_dir else 'a file'}")
        above = next((p for p in path.absolute().parents if p.exists()), None)
        if above is not None and not above.is_dir():
            raise argparse.ArgumentTypeError(f"{above} is a file, not a directory")
        return path
    return parse


def _json_or_stdout(text: str) -> Path | str:
    """check-log's `--json`: "-" (or the flag alone) prints the JSON, else a file."""
    return text if text == "-" else _output(False)(text)


def _epilog() -> str:
    return (f"stores (verify --store): {', '.join(e.name for e in (*STORES, *BROKEN))}\n"
            f"invariants (--invariant): {', '.join(INVARIANTS)}\n"
            f"profiles (RUNBOUND_PROFILE): {', '.join(PROFILES)}")


def main(argv: Sequence[str] | None = None) -> int:
    parser = _Parser(
        prog="runbound", description=__doc__, epilog=_epilog(),
        formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--version", action="version", version=f"runbound {__version__}")
    sub = parser.add_subparsers(dest="command", required=True)

    verify = sub.add_parser("verify", help="check every bundled store against the model")
    verify.add_argument("--json", type=_output(False), metavar="PATH",
                        help="also write the verdicts to this file")
    verify.add_argument("--store", action="append", default=[],
                        help="only stores whose name contains this (repeatable)")
    verify.add_argument("--invariant", action="append", default=[],
                        help="only this invariant, e.g. I4 (repeatable)")
    verify.add_argument("--broken", action="store_true",
                        help="also the deliberately broken stores, to see the checker fail")
    verify.add_argument("--examples", type=_count(1),
                        help="examples per (store, invariant) (default: the profile's)")
    verify.add_argument("--random", action="store_true",
                        help="a fresh random search (default: derandomized, reproducible)")
    verify.add_argument("--jobs", type=_count(1), default=os.cpu_count() or 1,
                        help="(store, invariant) pairs checked at once (default: CPUs)")

    conform = sub.add_parser("conform", help="hold your own store to the model")
    conform.add_argument("factory", nargs="?",
                         help="package.module:factory, (policy, clock) -> store")
    conform.add_argument("--exec", dest="exec_command", metavar="COMMAND",
                         help="the store is this program, speaking specs/wire.md on "
                              "stdin/stdout (instead of a factory)")
    conform.add_argument("--timeout", type=positive("seconds"), metavar="SECONDS",
                         help="with --exec: real seconds to wait for each reply before "
                              "the store is reported hung (rule X2; default 10)")
    conform.add_argument("--out", type=_output(True),
                         default=Path("runbound-counterexamples"),
                         help="where to write counterexamples (JSON traces, pytest tests)")
    conform.add_argument("--examples", type=_count(1),
                         help="examples per invariant (default: the profile's)")
    conform.add_argument("--invariant", action="append", default=[],
                         help="only this invariant (repeatable)")
    conform.add_argument("--jobs", type=_count(1), default=os.cpu_count() or 1,
                         help="invariants checked at once, in processes (default: CPUs)")
    conform.add_argument("--fail-fast", action="store_true",
                         help="stop at the first invariant broken")
    conform.add_argument("--json", type=_output(False), metavar="PATH",
                         help="also write the verdicts to this file")
    conform.add_argument("--allow-unknown", action="store_true",
                         help="exit 0 even if some checks could not decide (unknown)")

    replay = sub.add_parser("replay", help="re-run a counterexample trace against a store, "
                            "or check a recorded history again against the model")
    replay.add_argument("trace", type=Path, help="a counterexample (JSON), or a "
                        "NAME.history.json of an I19 failure or a failing log")
    replay.add_argument("factory", nargs="?", help="package.module:factory (default: the "
                        "trace's own; none for a history, which no store runs)")
    replay.add_argument("--json", type=_output(False), metavar="PATH",
                        help="also write the verdict to this file")

    seeds = sub.add_parser("seeds", help="write specs/seeds.md from a verify --json file")
    seeds.add_argument("--from", dest="source", type=Path, default=Path("out/verify.json"))
    seeds.add_argument("--check", action="store_true",
                       help="exit 1 if specs/seeds.* differ from what this code writes")

    spec = sub.add_parser("spec", help="regenerate the generated parts of specs/")
    spec.add_argument("--check", action="store_true",
                      help="exit 1 if specs/ differs from what the model generates")

    explore = sub.add_parser("explore", help="every state of a small world, breadth first")
    explore.add_argument("--ids", type=_count(1), help="run ids (default 3)")
    explore.add_argument("--horizon", type=_count(0), help="clock ticks (default 2)")
    explore.add_argument("--interval", type=_count(1),
                         help="worker interval, ticks (default 1)")
    explore.add_argument("--events", type=_count(0), help="appends tried per run (default 1)")
    explore.add_argument("--policy", help="the policy, as JSON (fields of "
                         "runbound.model.policy.Policy; default: "
                         "runbound.model.check.explore.World's)")
    explore.add_argument("--no-symmetry", action="store_true", help="name every run id")
    explore.add_argument("--plant", choices=PLANTED_BUGS,
                         help="explore a deliberately broken model")
    explore.add_argument("--allow-unreached", action="append", default=[], metavar="NAME",
                         help="a sometimes-property this world may leave unreached "
                              "(repeatable; default: every one must be reached)")
    explore.add_argument("--max-states", type=_count(1), default=2_000_000,
                         help="stop after this many states (then unknown, not a pass; "
                              "default 2,000,000)")
    explore.add_argument("--json", type=_output(False), metavar="PATH",
                         help="also write the result to this file")
    explore.add_argument("--oracle", action="store_true",
                         help="explore through the spec itself (check/explore.py), not "
                              "the kernel (check/explore_kernel.py) held equal to it")
    explore.add_argument("--replay", type=_count(1), metavar="DEPTH",
                         help="also replay every path up to DEPTH calls against --store")
    explore.add_argument("--store",
                         help="with --replay: a store of `runbound verify` (default "
                              "memory), or package.module:factory")

    check_log = sub.add_parser("check-log", help="check a recorded log against the model")
    check_log.add_argument("log", type=Path, help="a log of specs/log.md")
    check_log.add_argument("--json", nargs="?", const="-", type=_json_or_stdout,
                           metavar="PATH", help="also write the verdict as JSON to this "
                           "file; alone (or -): print only the JSON")
    check_log.add_argument("--out", type=_output(True), default=Path("runbound-check-log"),
                           help="where a failure's timeline is written (HTML, Porcupine)")
    check_log.add_argument("--allow-unknown", action="store_true",
                           help="exit 0 if the check could not decide (unknown)")

    args = parser.parse_args(argv)
    try:
        return _dispatch(args)
    # a bad RUNBOUND_PROFILE is a usage error too, not a crash
    except (UsageError, ProfileError) as error:
        print(f"runbound {args.command}: error: {error}", file=sys.stderr)
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
        raise UsageError("give package.module:factory or --exec COMMAND")
    if args.exec_command is not None and not args.exec_command.strip():
        raise UsageError("--exec needs a command")
    if args.timeout is not None and args.exec_command is None:
        raise UsageError("--timeout needs --exec (a factory's store is not waited for)")
    if args.exec_command is not None:  # the same path, with a factory of processes
        args.factory = f"exec:{args.exec_command}"
    _known_invariants(args.invariant)
    factory, caps = _factory(args.factory, timeout=args.timeout)
    asked = list(dict.fromkeys(args.invariant)) or list(INVARIANTS)
    skipped = caps.skipped()
    if all(i in skipped for i in asked):  # a table of skips only would exit 0
        raise UsageError("nothing to check: " + "; ".join(
            sorted({f"the store {why}" for why in map(skipped.__getitem__, asked)}))
            + f" (so {', '.join(asked)} cannot be checked)")
    out = console()
    out.print(f"conformance of [bold]{args.factory}[/]: {caps}")

    total = len([i for i in asked if i not in skipped])  # skips are not run: no line each
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

    name = args.factory.rsplit(":", 1)[-1]  # the table's column: the line above names all
    try:
        with _bar(out, "conform", total) as bar:
            report = conform(factory, capabilities=caps, invariants=args.invariant or None,
                             examples=args.examples, jobs=args.jobs,
                             fail_fast=args.fail_fast, name=name, progress=landed)
    except FactoryFailed as error:
        raise UsageError(f"{args.factory}: {error}") from None
    render([report], out, title=f"conformance of {name}: invariant x verdict",
           expected=False)
    if args.json:
        write_json(args.json, verdicts_json([report]))
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


def _known_invariants(ids: Sequence[str]) -> None:
    unknown = [i for i in ids if i not in INVARIANTS]
    if unknown:
        raise UsageError(f"no such invariant: {', '.join(unknown)} (one of "
                         f"{', '.join(INVARIANTS)})")


def _factory(spec: str, *, stores: bool = False, timeout: float | None = None
             ) -> tuple[StoreFactory, Capabilities]:
    """The factory `spec` names (package.module:factory or, `stores`, the name of a store
    of `runbound verify`) and what its stores declare; UsageError if it builds none."""
    by_name = {e.name: e.factory for e in (*STORES, *BROKEN)} if stores else {}
    try:
        factory = by_name.get(spec) or load_factory(spec)
        if isinstance(factory, ExecFactory) and timeout is not None:
            factory.timeout = timeout  # before any process is started
        return factory, capabilities_of(factory)
    except BadFactorySpec as error:
        if by_name and ":" not in spec:
            raise UsageError(f"no store {spec!r} (one of {', '.join(by_name)}; or "
                             "package.module:factory)") from None
        raise UsageError(str(error)) from None
    except FactoryFailed as error:
        raise UsageError(f"{spec}: {error}") from None
    except StoreProcessError as error:  # `--exec`: no store process to ask what it has
        raise UsageError(f"{spec}: {error.rule}") from None


@contextmanager
def _bar(out: Console, what: str, total: int) -> Iterator[Callable[[int], None]]:
    """A progress bar on a terminal (nothing elsewhere: the lines say "k/n" there)."""
    with Progress(*Progress.get_default_columns(), console=out, transient=True,
                  disable=not out.is_terminal) as progress:
        task = progress.add_task(what, total=total)
        yield lambda done: progress.update(task, completed=done)


@contextmanager
def _counting(what: str, unit: str) -> Iterator[explore.Progress | None]:
    """How far a search has come (`unit`s so far, the depth), live on stderr while it
    runs; only on a terminal (elsewhere None: the search then calls nothing, and stdout,
    `--json` and captured output get none of it)."""
    if not sys.stderr.isatty():
        yield None
        return
    with Progress(SpinnerColumn(), TextColumn(f"{what}: {{task.fields[n]:,}} {unit}, depth "
                                              "{task.fields[depth]}"), TimeElapsedColumn(),
                  console=Console(stderr=True), transient=True) as progress:
        task = progress.add_task(what, total=None, n=0, depth=0)
        yield lambda n, depth: progress.update(task, n=n, depth=depth)


def _explore(args: argparse.Namespace) -> int:
    if args.store is not None and args.replay is None:
        raise UsageError("--store names the store --replay runs the paths against: give "
                         "--replay DEPTH too")
    store = args.store or "memory"
    # the store before the search: a bad name must not wait for a long exploration
    factory, caps = (_factory(store, stores=True) if args.replay is not None
                     else (None, None))
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
        # a policy's error names its field as the run: its rule says it all
        why = error.rule if isinstance(error, PolicyError) else str(error)
        raise UsageError(f"bad world: {why}") from None
    print(f"world: {world.ids} run ids, clock 0..{world.horizon}, worker every "
          f"{world.interval}s, {world.events} append(s) per run, policy "
          f"{json.dumps(policy_to_json(world.policy))}")
    if args.plant:
        print(f"planted bug: {args.plant}: {explore.PLANTED[args.plant][0]}")
    engine = explore.explore if args.oracle else explore_kernel.explore
    if args.oracle:
        print("engine: oracle (the spec itself, runbound.model.check.explore)")
    else:
        print(f"engine: kernel ({explore_kernel.engine()}, runbound.model.check.explore_kernel)")
    sys.stdout.flush()  # what is explored, shown before the wait
    try:
        with _counting("exploring", "states") as progress:
            result = engine(world, plant=args.plant, max_states=args.max_states,
                            progress=progress)
    except ValueError as error:  # a world past what the kernel packs
        raise UsageError(f"bad world: {error}") from None
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
            _explore_json(args, world, result, [], None)
        return 1
    if not result.complete:
        print(f"incomplete: stopped at --max-states {args.max_states:,}; the states not "
              "reached were not checked (unknown, not a pass)")
        if args.json:
            _explore_json(args, world, result, [], None)
        return 1
    print("every invariant and E1, E2 hold in every state")
    print(f"sometimes: {len(result.reached)}/{len(explore.SOMETIMES)} reached")
    vacuous = [name for name in result.unreached if name not in args.allow_unreached]
    for name in result.unreached:
        allowed = " (allowed)" if name not in vacuous else ""
        print(f"vacuous: never reached {name}: {explore.SOMETIMES[name].about}{allowed}")
    code = 0
    replayed = None
    if factory is not None:
        with _counting(f"replaying against {store}", "programs") as progress:
            replayed = explore.replay_paths(world, factory, args.replay, caps, progress)
        left_out = (f" ({replayed.skipped:,} left out: they call what {caps} lacks)"
                    if replayed.skipped else "")
        print(f"replayed {replayed.programs:,} programs against {store} in "
              f"{replayed.seconds:.1f}s{left_out}")
        if replayed.failure is not None:
            print(replayed.failure[0])
            code = 1
        else:
            print(f"{store} agrees with the model on every path up to {args.replay} "
                  "calls")
    if args.json:
        _explore_json(args, world, result, vacuous, replayed)
    if vacuous:  # last, so it is what a reader sees
        print(f"vacuous: this world checks nothing where it never reaches "
              f"{', '.join(vacuous)}: widen it, or pass --allow-unreached NAME")
        code = 1
    return code


def _explore_json(args: argparse.Namespace, world: explore.World, result: explore.Result,
                  vacuous: list[str], replayed: explore.ReplayResult | None) -> None:
    """`explore --json`: the verdict, the world and what it covered (and, with --replay,
    what the store did on the paths), as data."""
    store_failed = replayed is not None and replayed.failure is not None
    verdict = ("fail" if result.violation is not None or store_failed
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
        "replay": None if replayed is None else {
            "store": args.store or "memory", "depth": args.replay,
            "programs": replayed.programs, "skipped": replayed.skipped,
            "failure": None if replayed.failure is None else replayed.failure[0]},
    }
    write_json(args.json, data)


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
            _replay_json(args, None, replayed.verdict, "I19", replayed.note, replayed.found)
            return 0 if replayed.verdict == "pass" else 1
        found = cx.read(args.trace)
        if not (args.factory or found.factory):
            raise cx.BadCounterexample(str(args.trace), "names no factory: give one")
        # the trace's own factory is held to what a given one is: it must build a store
        factory = _factory(args.factory or found.factory)[0]
        violation = replay_file(args.trace, factory)
    except (cx.BadCounterexample, BadHistory, OSError) as error:
        raise UsageError(said(error)) from None
    except (KeyError, TypeError, ValueError) as error:  # the model's side: a store's own
        # errors are results the replay compares, never raised here
        raise UsageError(f"{args.trace}: its program is not one the model runs: "
                         f"{error!r}") from None
    if violation is None:
        print(f"{found.invariant}: the program runs clean")
        _replay_json(args, found, "pass", found.invariant, "the program runs clean", None)
        return 0
    again = Counterexample.of_violation(violation)
    print(cx.render(again))
    _replay_json(args, found, "fail", found.invariant, str(violation).splitlines()[0], again)
    return 1


def _replay_json(args: argparse.Namespace, program: Counterexample | None, verdict: str,
                 invariant: str, note: str, found: Counterexample | None) -> None:
    """`replay --json`: the verdict, as explore's (pass: the program runs clean, or an
    order of the history's calls fits; fail: it still breaks, with the counterexample
    the replay gave; unknown: a history that could not be decided). `program`: the
    trace replayed, None for a history (no store runs)."""
    if args.json is None:
        return
    write_json(args.json, {
        "verdict": verdict, "kind": "history" if program is None else "program",
        "trace": str(args.trace), "invariant": invariant,
        "factory": None if program is None else args.factory or program.factory,
        "note": note, "counterexample": None if found is None else cx.to_json(found)})


def _checkout() -> bool:
    """Is `specs/` a runbound checkout's (writable, under git), not a wheel's copy?"""
    return (SPECS.resolve().parent / "pyproject.toml").is_file()


def _seeds(args: argparse.Namespace) -> int:
    if not args.check and not _checkout():
        raise UsageError("writes specs/ of a runbound checkout; this runbound is installed "
                         "(its specs/ are the package's copy): run it in a clone")
    try:
        return _seeds_check(args) if args.check else _seeds_write(args)
    except report.BadVerdicts as error:
        raise UsageError(str(error)) from None
    except cx.BadCounterexample as error:  # a counterexample among the verdicts
        raise UsageError(f"{args.source}: {said(error)}") from None


def _seeds_write(args: argparse.Namespace) -> int:
    rows = report.write(args.source)
    print(f"wrote specs/seeds.md and specs/seeds.json ({len(rows)} rows)")
    return 0


def _seeds_check(args: argparse.Namespace) -> int:
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


def _verify(args: argparse.Namespace) -> int:
    entries = [*STORES, *(BROKEN if args.broken else ())]
    if args.store:
        entries = [e for e in entries if any(s in e.name for s in args.store)]
        if not entries:
            raise UsageError(f"no store matches {', '.join(args.store)}; stores: "
                             f"{', '.join(e.name for e in (*STORES, *BROKEN))}"
                             + ("" if args.broken else " (the broken ones with --broken)"))
    _known_invariants(args.invariant)
    invariants = list(dict.fromkeys(args.invariant))  # each once, however often named
    # Derandomized: the same code gives the same table, so verdicts can be compared run
    # to run (`runbound seeds --check`); --random explores afresh each time.
    examples = VERIFY_EXAMPLES[profile_name()] if args.examples is None else args.examples
    settings = machine_settings(database=None, derandomize=not args.random,
                                max_examples=examples)
    out = console()
    for entry in entries:
        out.print(f"[bold]{entry.name}[/]: {entry.about}")

    total = len(entries) * len(invariants or INVARIANTS)
    done = 0
    with _bar(out, "verify", total) as bar:

        def progress(name: str, check: Check) -> None:
            nonlocal done
            done += 1
            bar(done)
            out.print(f"  [{done}/{total}] {name} {check.invariant}: {check.verdict} "
                      f"({check.seconds:.1f}s)", highlight=False, markup=False)

        reports = check_many([(e.name, e.factory, e.expected, e.exact) for e in entries],
                             invariants=invariants or None, settings=settings,
                             jobs=args.jobs, progress=progress)
    render(reports, out)
    if args.json:
        write_json(args.json, verdicts_json(reports))
        out.print(f"wrote {args.json}")
    surprises = [r.name for r in reports if not r.as_expected]
    if surprises:
        out.print(f"[red bold]not as expected:[/] {', '.join(surprises)}")
        return 1
    return 0


def _spec(args: argparse.Namespace) -> int:
    if not args.check and not _checkout():
        raise UsageError("writes specs/ of a runbound checkout; this runbound is "
                         "installed: `runbound spec --check` compares its packaged copy")
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
