"""One text per rule: the spec, the memory, SQLite and Redis stores (its Lua script
included) word every refusal the same, from `model/rules.py`."""

from __future__ import annotations

import math
import re
from typing import Any

import pytest

from runbound.model import rules, spec
from runbound.model.clock import VirtualClock
from runbound.model.lifecycle import Status
from runbound.model.policy import Policy
from runbound.model.protocol import StoreFactory, dispose
from runbound.reference.memory import MemoryRunStore
from runbound.reference.redis_server import on_local_server
from runbound.reference.sqlite import on_disk

CALLS: list[tuple[str, tuple[Any, ...]]] = [
    ("start", ("a",)), ("start", ("a",)), ("start", ("b",)),
    ("transition", ("a", Status.COMPLETED)), ("get", ("zz",)),
    ("transition", ("a", Status.FAILED)), ("heartbeat", ("a",)),
    ("transition", ("a", Status.RUNNING)), ("start", ("b",)), ("get", ("b",)),
    ("get", ("a",)), ("get", ("a",)),  # past its TTL, no write to sweep it: V2
]


def messages_of_the_model(policy: Policy) -> list[str]:
    state, out, now = spec.initial(policy), [], 1.0
    for op, args in CALLS:
        now += 1.0
        state, result = spec.apply(state, op, args, now)
        out.append(str(result) if isinstance(result, Exception) else "ok")
    return out


@pytest.mark.parametrize("factory", [MemoryRunStore, on_disk, on_local_server],
                         ids=["memory", "sqlite", "redis"])
def test_every_store_words_each_refusal_as_the_table(factory: StoreFactory) -> None:
    policy = Policy(max_active=1, ttl=5.0)
    clock = VirtualClock(1.0)
    store = factory(policy, clock)
    out = []
    try:
        for op, args in CALLS:
            clock.advance(1.0)
            try:
                getattr(store, op)(*args)
                out.append("ok")
            except Exception as error:
                out.append(str(error))
        clock.fault(math.nan)
        with pytest.raises(Exception) as refused:
            store.get("a")
        assert rules.text("C1", reading="nan") in str(refused.value)
    finally:
        clock.fault(None)
        dispose(store)
    assert out == messages_of_the_model(policy)
    codes = {code for m in out for code in re.findall(r"\b([A-Z]\d): ", m)}
    assert {"A1", "A2", "T1", "T2", "V1", "V2"} <= codes, out


def test_a_rule_text_names_its_code_and_fills_its_fields() -> None:
    assert rules.text("A2", active=3, max_active=3) == "A2: 3 active runs, max_active is 3"
    with pytest.raises(KeyError):
        rules.text("A2")  # a field missing is an error, not a silent "{active}"
    assert "A2 = " in rules.lua_table() and "{max_active}" in rules.lua_table()
