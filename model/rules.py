"""The one text of each refusal a store gives for the rules of `specs/lifecycle.md`.

A refusal's message starts with the rule's code, so a reader (and a log) can find the
rule it broke. The spec, the stores and the Redis store's Lua script all word their
refusals from this table: `text(code, **fields)` in Python, and in Lua the same table,
written into the script when the store loads it (`lua_table`), so no store copies a
message by hand and none drifts from the others.
"""

from __future__ import annotations

import json

#: code -> the refusal's text, `{name}` where a value of the call goes
RULES: dict[str, str] = {
    "L1": "the store is closed",
    "C1": "the clock read {reading}; a reading must be a finite number",
    "A1": "a run with this id is already active",
    "A2": "{active} active runs, max_active is {max_active}",
    "V1": "no run with this id is retained",
    "V2": "the run is past its TTL",
    "T1": "cannot move {current} -> {target}; allowed: {allowed}",
    "T2": "{op} needs an active run",
}


def text(code: str, **fields: object) -> str:
    """The message of a refusal by rule `code`, with the call's values in it."""
    return f"{code}: {RULES[code].format(**fields)}"


def lua_table() -> str:
    """`RULES` as a Lua table literal (JSON strings are Lua strings for these texts)."""
    return "{" + ", ".join(f"{code} = {json.dumps(words)}" for code, words in RULES.items()) + "}"
