"""`specs/seeds.md` and `specs/seeds.json`: for each seed, every invariant its replica
breaks (and every claim its reviews or PR make), with the counterexample `verify` found
and the fixed version's verdict. Generated from `runbound verify --json`; `--check`
fails where the committed files differ from what this code writes (see `differences`).

No times in either file: a check's seconds change from run to run, and the files must
come out the same from the same verdicts and counterexamples."""

from __future__ import annotations

import difflib
import json
from pathlib import Path
from typing import Any, cast

from runbound.catalog import STORES
from runbound.model.check import counterexample as cx
from runbound.model.files import SPECS
from runbound.model.invariants import INVARIANTS

SEEDS = ("S1", "S2")
#: what the reviews (shared/seeds/) and PR #61 say, by the invariant that decides it
KNOWN: dict[tuple[str, str], str] = {
    ("S1", "I2"): "max_runs is best-effort: in-progress runs push the store past it, "
                  "and it stays past (reviews 000, 001)",
    ("S1", "I3"): "nothing limits runs in progress (review 000)",
    ("S1", "I15"): "in-progress runs never expire: stuck runs accumulate (reviews 000, 001)",
    ("S1", "I11"): "concurrent start_cleanup_worker calls start two workers (review 001)",
    ("S1", "I16"): "the cleanup worker cannot be stopped (review 001)",
    ("S1", "I18"): "a sweep that always fails logs every interval, forever (review 001)",
    ("S1", "I17"): "a restart loses every run (review 000)",
    ("S2", "I1"): "PR claim: retained terminal runs are capped, oldest terminated first",
    ("S2", "I3"): "active runs are unbounded: only terminal runs are capped",
    ("S2", "I4"): "PR claim: active runs are never evicted",
    ("S2", "I5"): "PR claim: terminal runs are gone after the TTL",
    ("S2", "I7"): "PR claim: terminated_at is stamped exactly once",
    ("S2", "I17"): "a restart loses every run (in memory)",
}
#: the fix (numbered as in reference/seeds/fixed.py) for each defect
FIXES: dict[tuple[str, str], str] = {
    ("S1", "I1"): "1: a cap on finished runs; 8: 0 means 0",
    ("S1", "I2"): "1: admission control (max_active) and a cap on finished runs",
    ("S1", "I3"): "1: admission control",
    ("S1", "I5"): "4: expired runs hidden at read",
    ("S1", "I6"): "3: terminated_at stamped at the first finish",
    ("S1", "I7"): "3: terminated_at, not updated_at, keys the TTL; finished runs are final",
    ("S1", "I9"): "3: status changes checked against a table",
    ("S1", "I10"): "7: a refused call undoes its prune",
    ("S1", "I11"): "6: check and start under one lock",
    ("S1", "I12"): "5: artifacts are a ring buffer",
    ("S1", "I15"): "2: a lease fails stuck runs",
    ("S1", "I16"): "6: a stop event; close stops the worker",
    ("S1", "I18"): "6: exponential backoff, logging at the 1st, 2nd, 4th... failure",
    ("S1", "I8"): "9: time never goes back",
    ("S1", "E1"): "6: the worker sweeps on the store's clock; 8: 0 means 0",
    ("S1", "E2"): "2: a lease fails stuck runs; 6: the worker sweeps on the store's clock",
    ("S2", "I8"): "6: time never goes back",
    ("S2", "I2"): "3: admission control",
    ("S2", "I3"): "3: admission control (max_active)",
    ("S2", "I4"): "1: a finished run is final, so no frame revives it",
    ("S2", "I5"): "2: expired runs hidden at read",
    ("S2", "I6"): "1: a finished run is final",
    ("S2", "I9"): "1: a finished run is final",
    ("S2", "I10"): "5: a refused start undoes its sweep",
    ("S2", "I15"): "4: a lease fails runs that stopped sending frames",
}
NOT_FIXED = {"I13": "the API stays the seed's own", "I14": "the API stays the seed's own",
             "I19": "the API stays the seed's own (results are compared with the model's)",
             "I17": "durability is no small change: use the SQLite store"}


FOUND = "found by the checker"


class BadVerdicts(ValueError):
    """A file that is not verdicts as `runbound verify --json` writes them."""


def read_verdicts(path: Path) -> dict[str, Any]:
    """The verdicts `runbound verify --json` wrote to `path`, checked to be of that shape
    and to hold both seeds' replicas (else every row would differ for want of one);
    BadVerdicts, saying how to write them, if not."""
    how = f"write them first with `runbound verify --json {path}`"
    if not path.is_file():
        raise BadVerdicts(f"no verdicts at {path}: {how}")
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as error:
        raise BadVerdicts(f"{path} is not JSON ({error}): {how}") from None
    stores = data.get("stores") if isinstance(data, dict) else None
    if not isinstance(stores, list) or not all(
            isinstance(s, dict) and isinstance(s.get("name"), str)
            and isinstance(s.get("checks"), list)
            and all(isinstance(c, dict) and isinstance(c.get("invariant"), str)
                    and isinstance(c.get("verdict"), str) for c in s["checks"])
            for s in stores):
        raise BadVerdicts(f'{path} holds no verdicts of `runbound verify --json` '
                          f'({{"stores": [{{"name", "checks": [{{"invariant", "verdict", '
                          f'...}}]}}]}}): {how}')
    missing = [f"seed:{seed}" for seed in SEEDS
               if f"seed:{seed}" not in {s["name"] for s in stores}]
    if missing:
        raise BadVerdicts(f"{path} holds no verdicts of {', '.join(missing)}: write them "
                          f"with `runbound verify --json {path}` (no --store)")
    return cast(dict[str, Any], data)


def rows_from_verify(verify: dict[str, Any]) -> list[dict[str, Any]]:
    """One row per (seed, invariant) its replica fails or its reviews name: the
    verdicts, the counterexample in its one JSON form (`runbound.model.check.
    counterexample`), the fix."""
    checks = {(s["name"], c["invariant"]): c for s in verify["stores"] for c in s["checks"]}
    rows = []
    for seed in SEEDS:
        for iid in INVARIANTS:
            replica = checks.get((f"seed:{seed}", iid))
            fixed = checks.get((f"fixed:{seed}", iid))
            if replica is None or (replica["verdict"] != "fail" and (seed, iid) not in KNOWN):
                continue
            rows.append({
                "seed": seed, "invariant": iid, "defect": KNOWN.get((seed, iid), FOUND),
                "replica": replica["verdict"],
                "counterexample": replica.get("counterexample"),
                "fixed": None if fixed is None else fixed["verdict"],
                "fix": FIXES.get((seed, iid)) or NOT_FIXED.get(iid, ""),
            })
    return rows


def counterexample(row: dict[str, Any]) -> cx.Counterexample | None:
    data = row.get("counterexample")
    return None if data is None else cx.from_json(data, f"{row['seed']} {row['invariant']}")


def _anchor(row: dict[str, Any]) -> str:
    return f"{row['seed']}-{row['invariant']}".lower()


def render_markdown(rows: list[dict[str, Any]]) -> str:
    """Per seed: a table of short cells, then each counterexample below it, a fenced
    block each (`runbound.model.check.counterexample.render`)."""
    out = ["# The seeds, judged", "",
           "Generated by `runbound seeds --from out/verify.json` from a `runbound verify`",
           "run: do not edit (`runbound seeds --check` fails if this file differs from what",
           "the code writes). For each seed, every invariant its replica breaks, and every",
           "claim its reviews or PR make, with the smallest counterexample found, and the",
           "verdict on the fixed version (`reference/seeds/fixed.py`, whose docstring",
           "numbers the fixes). The programs replay: `tests/test_seeds_report.py` runs each",
           "against the replica (it must still break) and the fix (it must not).", ""]
    for seed in SEEDS:
        mine = [r for r in rows if r["seed"] == seed]
        out += [f"## {seed}", "",
                "| invariant | defect or claim | replica | fixed | fix |",
                "|---|---|---|---|---|"]
        for r in mine:
            found = counterexample(r)
            verdict = r["replica"].upper() if r["replica"] == "fail" else r["replica"]
            if found is not None:
                n = found.calls
                unit = {"program": "call", "history": "call", "probe": "step"}[found.kind]
                verdict = f"[{verdict}, {n} {unit}{'s' if n != 1 else ''}](#{_anchor(r)})"
            out.append(f"| {r['invariant']} {INVARIANTS[r['invariant']].title} | "
                       f"{r['defect']} | {verdict} | {r['fixed']} | {r['fix'] or '—'} |")
        out.append("")
        for r in mine:
            found = counterexample(r)
            if found is not None:
                out += [f"### {r['seed']} {r['invariant']}", "",
                        cx.render(found, markdown=True), ""]
    return "\n".join(out)


def write(verify_json: Path) -> list[dict[str, Any]]:
    rows = rows_from_verify(read_verdicts(verify_json))
    (SPECS / "seeds.json").write_text(_json_text(rows))
    (SPECS / "seeds.md").write_text(render_markdown(rows))
    return rows


def _json_text(rows: list[dict[str, Any]]) -> str:
    return json.dumps(rows, indent=1) + "\n"


def _named_defects(seed: str) -> frozenset[str]:
    """The invariants the reviews name as this seed's defects: the catalog's expected
    failures for its replica."""

    return next(e.expected for e in STORES if e.name == f"seed:{seed}")


def differences(verify_json: Path) -> tuple[list[str], list[str]]:
    """(errors, notes), comparing the committed files with what this code writes.

    Errors: `specs/seeds.md` is not what the code writes from `specs/seeds.json` (edited
    by hand, or written by an older renderer); or a new verify run (`verify_json`) gives
    other files: another verdict, or another program. Notes: a probe's or a concurrent
    history's steps that differ with the verdicts the same -- threads interleave
    differently from run to run, and the committed one still replays
    (`tests/test_seeds_report.py`)."""
    committed_text = (SPECS / "seeds.json").read_text()
    committed_rows = json.loads(committed_text)
    errors: list[str] = []
    notes: list[str] = []
    md = (SPECS / "seeds.md").read_text()
    if md != render_markdown(committed_rows):
        errors.append("specs/seeds.md is not what `runbound seeds` writes from "
                      "specs/seeds.json (edited by hand, or written by older code):\n"
                      + _diff(md, render_markdown(committed_rows), "specs/seeds.md"))
    if committed_text != _json_text(committed_rows):
        errors.append("specs/seeds.json is not as `runbound seeds` writes it")
    committed = {(r["seed"], r["invariant"]): r for r in committed_rows}
    fresh = {(r["seed"], r["invariant"]): r
             for r in rows_from_verify(read_verdicts(verify_json))}
    for key in sorted(committed.keys() | fresh.keys()):
        a, b = committed.get(key), fresh.get(key)
        if a == b:
            continue
        was = a and (a["replica"], a["fixed"])
        now = b and (b["replica"], b["fixed"])
        label = f"{key[0]} {key[1]}"
        if was != now:
            named = key[1] in _named_defects(key[0])
            why = ("a defect the reviews name" if named else "the fix's verdict"
                   if a and b and a["fixed"] != b["fixed"] else "another verdict")
            errors.append(f"{label}: committed {was}, now {now} ({why})")
            continue
        assert a is not None and b is not None
        old, new = counterexample(a), counterexample(b)
        text = _diff(_block(old), _block(new), label)
        if old is not None and new is not None and old.kind != "program" \
                and old.kind == new.kind:
            notes.append(f"{label}: the {old.kind}'s steps differ (threads interleave "
                         f"differently run to run):\n{text}")
        else:
            errors.append(f"{label}: the counterexample differs:\n{text}")
    return errors, notes


def _block(found: cx.Counterexample | None) -> str:
    return "(none)\n" if found is None else cx.render(found) + "\n"


def _diff(old: str, new: str, name: str) -> str:
    return "".join(difflib.unified_diff(old.splitlines(keepends=True),
                                        new.splitlines(keepends=True),
                                        f"{name} (committed)", f"{name} (this code)"))
