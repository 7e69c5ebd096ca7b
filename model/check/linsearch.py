"""The fast linearizability search behind `linearizability.py`, and the parallel check of
independent parts. `linearizability.plain_search` is its oracle: a differential test
requires both to give the same verdict on many small random histories.

Why written by hand: Porcupine (Go, Athalye) and Knossos (Clojure) are the libraries that
do this, and neither runs Python models; no Python package checks histories against a
model given as a Python function. The search follows Porcupine's `checkSingle`:

- The history is one doubly linked list of call and return events in time order (a call
  before a return at the same instant: they overlap). The calls that may go next are the
  call events before the first return event in the list; walking from the head visits
  them in invocation order, with nothing sorted per node. Linearizing a call *lifts* its
  two events out of the list and backtracking *unlifts* them, each O(1) (dancing links:
  undone in reverse order, so the neighbours a lifted event remembers are still right).
- Lowe's memo on (calls linearized, model state). Calls are split into chains, each
  ordered in real time (one per thread, as a thread's calls are sequential), so the calls
  linearized are a prefix of each chain: one int encodes the set (mixed radix, one digit
  per chain), updated in O(1) by lift and unlift.
- The model step is memoised: model states are interned to ints (by `essence`: without
  the next start number where no call can observe it), and (state, call) maps to the
  next state and the part of the answer `same_result` compares (`answer`), interned too.
  A call that leaves the state as it was (a read, a refusal) leaves the walk's other
  candidates facing the same state, so most steps after the first are one dict lookup.

Where a listing passes a cursor, states are compared as the plain search compares them,
by `ModelState.__eq__`, which leaves `Run.seq` out (as run equality does) but keeps the
next start number.

Effort, not time: the budget counts nodes visited ((linearized, state) pairs first
seen); a search over it answers None ("unknown"), never True.
"""

from __future__ import annotations

import contextlib
import gc
import itertools
import multiprocessing
import os
import pickle
import time
from collections.abc import Hashable, Iterator, Sequence
from concurrent.futures import FIRST_COMPLETED, Future, ProcessPoolExecutor, wait
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, NamedTuple

from runbound.model import spec
from runbound.model.errors import RunboundError
from runbound.model.policy import Policy
from runbound.model.records import Page

if TYPE_CHECKING:
    from multiprocessing.sharedctypes import SynchronizedArray

    from runbound.model.check.linearizability import Call

#: what a search returns: True, False, or None over budget (or cancelled); the nodes it
#: visited; on False the indices of the calls left after the longest orderable prefix
Outcome = tuple[bool | None, int, list[int]]

#: no model answer is ever equal to this: a store's answer that is an exception not of
#: runbound (the model returns only runbound errors and plain values)
_FOREIGN = ("foreign",)

#: how often (in nodes) a search in a worker looks whether it has been cancelled
_POLL = 1024


def answer(result: object) -> Hashable:
    """The part of a result that `stateful.same_result` compares, as one value: two
    results match iff their answers are equal. Errors by class, pages by their runs and
    whether a next page exists, any other value by type and value."""
    if isinstance(result, RunboundError):
        return ("error", type(result))
    if isinstance(result, BaseException):
        return _FOREIGN
    if isinstance(result, Page):
        return ("page", result.runs, result.next_cursor is None)
    return ("value", type(result), result)


class Plain(NamedTuple):
    """A call as the search needs it, picklable (a runbound error is not: its `__init__`
    takes three arguments, `args` holds one) and with its answer computed once. A tuple:
    80,000 of these are made per long history, ten times faster than a frozen class."""

    op: str
    args: tuple[Any, ...]
    invoked: int
    returned: int
    thread: int
    answer: Hashable


def plain(calls: Sequence[Call]) -> list[Plain]:
    with _no_cyclic_gc():
        return [Plain(c.op, c.args, c.invoked, c.returned, c.thread, answer(c.result))
                for c in calls]


@contextlib.contextmanager
def _no_cyclic_gc() -> Iterator[None]:
    """The search allocates a million small objects and keeps most (the memo, the
    states, the nodes seen), none in a cycle (a refusal's traceback is dropped): the
    cyclic collector would walk them, and every object the caller holds, again and
    again for nothing (measured: a third of the time on 8 x 10k calls). Reference
    counting still frees everything."""
    collecting = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if collecting:
            gc.enable()


def seq_blind(calls: Sequence[Plain]) -> bool:
    """Can no call of `calls` tell start numbers (`seq`) apart? Only a listing's cursor
    reads them: answers compare runs without `seq` and pages by whether a next one
    exists, and the eviction order reads only their order, which is the runs' order."""
    return not any(c.op == "list_runs" and len(c.args) > 2 and c.args[2] is not None
                   for c in calls)


def essence(state: spec.ModelState, blind: bool) -> Hashable:
    """What of a model state its future answers depend on. With `blind` (see
    `seq_blind`), not the next start number: two states that differ only there answer
    every call alike, so they are one node of the search and one entry of the memo. This
    is what makes the model's states repeat (the next number grows with every start)."""
    if not blind:
        return state
    return (state.runs, state.clock, state.worker, state.closed)


def search(policy: Policy, calls: Sequence[Plain], now: float, budget: int,
           pending: frozenset[int] = frozenset(),
           cancel: SynchronizedArray[int] | None = None, slot: int = 0) -> Outcome:
    """Is there an order of `calls`, respecting real time, that the model agrees with?
    Calls whose index is in `pending` have not returned: any result fits, and they need
    not be placed. `cancel[slot]` set (by another process) stops the search with None."""
    with _no_cyclic_gc():
        return _walk(policy, calls, now, budget, pending, cancel, slot)


def _walk(policy: Policy, calls: Sequence[Plain], now: float, budget: int,
          pending: frozenset[int], cancel: SynchronizedArray[int] | None, slot: int
          ) -> Outcome:
    n = len(calls)
    # --- the event list: node 0 is the head, 1..n the calls, n+1..2n their returns,
    # 2n+1 a tail that stops every walk. A pending call returns after everything.
    inf = max((c.returned for c in calls), default=0) + 1
    events = sorted([(c.invoked, 0, i + 1) for i, c in enumerate(calls)]
                    + [(inf if i in pending else c.returned, 1, n + 1 + i)
                       for i, c in enumerate(calls)])
    order = [0, *(e[2] for e in events), 2 * n + 1]
    nxt = [0] * (2 * n + 2)
    prv = [0] * (2 * n + 2)
    for a, b in itertools.pairwise(order):
        nxt[a], prv[b] = b, a
    # --- chains, and the radix of each call's chain in the linearized-set code
    chain_of = [0] * n
    radix: list[int] = []
    members: list[list[int]] = []  # per chain: its calls in order
    last: list[int] = []  # per chain: the return time of its last call
    by_thread: dict[int, list[int]] = {}
    for i in sorted(range(n), key=lambda i: (calls[i].invoked, i)):
        chains = by_thread.setdefault(calls[i].thread, [])
        k = next((k for k in chains if last[k] < calls[i].invoked), None)
        if k is None:
            k = len(members)
            chains.append(k)
            members.append([])
            last.append(0)
        chain_of[i], last[k] = k, calls[i].returned
        members[k].append(i)
    weight = 1
    for chain in members:
        radix.append(weight)
        weight *= len(chain) + 1
    step_of = [radix[chain_of[i]] for i in range(n)]
    # --- interned states, answers and calls, and the memoised step: keys are ints
    states: list[spec.ModelState] = [spec.initial(policy)]
    blind = seq_blind(calls)
    ids: dict[Hashable, int] = {essence(states[0], blind): 0}
    answers: dict[Hashable, int] = {}

    def answer_id(value: Hashable, unique: int) -> int:
        try:
            return answers.setdefault(value, len(answers))
        except TypeError:  # unhashable: a store's answer no model answer equals
            return unique

    kinds: dict[tuple[str, tuple[Any, ...]], int] = {}
    kind_of: list[int] = []
    for c in calls:
        try:
            kind_of.append(kinds.setdefault((c.op, c.args), len(kinds)))
        except TypeError:  # an unhashable argument: never memoised
            kind_of.append(-1)
    width = len(kinds) + 1
    memo: dict[int, tuple[int, int]] = {}  # state * width + kind -> (state, answer)
    wants = [-1 if i in pending else answer_id(c.answer, -2 - i)
             for i, c in enumerate(calls)]  # -1: still pending, any answer fits
    needed = sum(1 for i in range(n) if i not in pending)

    def step(sid: int, i: int) -> tuple[int, int]:
        new, result = spec.apply(states[sid], calls[i].op, calls[i].args, now)
        if isinstance(result, BaseException):  # its traceback's frames would hold this
            result.__traceback__ = None        # one: a cycle, left to no collector
        seen_as = essence(new, blind)
        nid = ids.get(seen_as)
        if nid is None:
            nid = ids[seen_as] = len(states)
            states.append(new)
        hit = (nid, answer_id(answer(result), -2 - n))
        if kind_of[i] >= 0:
            memo[sid * width + kind_of[i]] = hit
        return hit

    # --- the walk. A node is (calls linearized, state): one int, state * weight + code.
    if needed == 0:
        return True, 0, []
    sid = code = 0
    seen = {0}
    explored = 1
    lifted: list[int] = []  # calls linearized, in order
    saved: list[int] = []  # the state before each
    depth = best_depth = best = 0  # best: the code of the longest orderable prefix
    memo_get, seen_add = memo.get, seen.add
    entry = nxt[0]
    while True:
        if entry > n:  # a return event (or the tail): no candidate left here, back up
            if not lifted:
                return False, explored, _left(best, members, radix)
            i = lifted.pop()
            sid = saved.pop()
            code -= step_of[i]
            depth -= 1
            needed += wants[i] != -1
            call, ret = i + 1, n + 1 + i  # unlift: the reverse of lift, below
            nxt[prv[ret]] = ret
            prv[nxt[ret]] = ret
            nxt[prv[call]] = call
            prv[nxt[call]] = call
            entry = nxt[call]
            continue
        i = entry - 1
        hit = memo_get(sid * width + kind_of[i]) if kind_of[i] >= 0 else None
        nid, got = hit if hit is not None else step(sid, i)
        want = wants[i]
        if got == want or want == -1:
            key = nid * weight + code + step_of[i]
            if key not in seen:
                seen_add(key)
                explored += 1
                if explored > budget:
                    return None, explored, []
                if cancel is not None and explored % _POLL == 0 and cancel[slot]:
                    return None, explored, []
                lifted.append(i)
                saved.append(sid)
                sid = nid
                code += step_of[i]
                depth += 1
                needed -= want != -1
                if needed == 0:
                    return True, explored, []
                if depth > best_depth:
                    best_depth, best = depth, code
                call, ret = entry, n + 1 + i  # lift the call and its return
                nxt[prv[call]] = nxt[call]
                prv[nxt[call]] = prv[call]
                nxt[prv[ret]] = nxt[ret]
                prv[nxt[ret]] = prv[ret]
                entry = nxt[0]
                continue
        entry = nxt[entry]


def _left(code: int, members: list[list[int]], radix: list[int]) -> list[int]:
    """The calls not in the prefix `code` encodes, in chain order, chain by chain."""
    return [i for chain, weight in zip(members, radix, strict=True)
            for i in chain[code // weight % (len(chain) + 1):]]


# --- independent parts, in parallel --------------------------------------------------

#: a part of this many calls or more is worth a worker process: its search takes about a
#: second or more (10 to 25 us a call, measured on 8 threads x 10k calls), more than
#: starting the pool and sending the part cost (about half a second on 2 cores)
BIG_PART = 50_000


@dataclass
class PartsOutcome:
    """The outcome of each part up to the first that is not True (which decides), in
    the parts' order whatever order they finished in; how many parts went to worker
    processes, and the CPU seconds they spent (this process's CPU time leaves it out);
    how many of those were cancelled by an earlier part's failure (stopped, or never
    started)."""

    outcomes: list[Outcome]
    in_workers: int = 0
    worker_cpu: float = 0.0
    cancelled: int = 0


def search_parts(policy: Policy, parts: Sequence[Sequence[Plain]], now: float,
                 budgets: Sequence[int], *, workers: int | None = None,
                 big_part: int = BIG_PART) -> PartsOutcome:
    """Search each part; the first (in the parts' order) that is not True decides.

    With more than one CPU and at least two parts of `big_part` calls or more, the parts
    are searched in a pool of `workers` processes (default: one per CPU); else one after
    another here. In the pool, a part that fails or runs over its budget cancels every
    later part (they cannot change the verdict), never an earlier one; the searches are
    deterministic, so the outcome is the one the walk here gives, whatever order the
    workers finish in."""
    cpus = workers or os.cpu_count() or 1
    outcomes: list[Outcome] = []
    if cpus < 2 or sum(len(part) >= big_part for part in parts) < 2:
        for part, budget in zip(parts, budgets, strict=True):
            outcomes.append(search(policy, part, now, budget))
            if outcomes[-1][0] is not True:
                break
        return PartsOutcome(outcomes)
    done, spent, cancelled = _pool(policy, parts, now, budgets, min(cpus, len(parts)))
    for k in range(len(parts)):
        outcomes.append(done[k])
        if done[k][0] is not True:
            break
    return PartsOutcome(outcomes, len(parts), spent, cancelled)


def _pool(policy: Policy, parts: Sequence[Sequence[Plain]], now: float,
          budgets: Sequence[int], workers: int) -> tuple[dict[int, Outcome], float, int]:
    """Search the parts in `workers` processes; each that is not True cancels the later
    ones. The outcomes up to the first that is not True, the CPU seconds spent, and how
    many parts were cancelled."""
    # forkserver, not fork: the caller may have threads (stores' workers), and a forked
    # child could inherit a lock one of them held
    context = multiprocessing.get_context("forkserver")
    context.set_forkserver_preload([__name__])  # workers start with it imported
    cancel = context.Array("b", len(parts), lock=False)
    results: dict[int, Outcome] = {}
    cpu, cancelled = 0.0, 0
    with ProcessPoolExecutor(workers, mp_context=context, initializer=_adopt,
                             initargs=(cancel,)) as pool:
        futures: dict[Future[tuple[Outcome, float]], int] = {
            pool.submit(_search_slot, policy, _pack(parts[k]), now, budgets[k], k): k
            for k in range(len(parts))}
        running = set(futures)
        decided = len(parts)  # the first part, in order, known not to be True
        while running:
            finished, running = wait(running, return_when=FIRST_COMPLETED)
            for future in finished:
                k = futures[future]
                if future.cancelled():
                    cancelled += 1
                    continue
                outcome, spent = future.result()
                cpu += spent
                if cancel[k]:  # stopped (or done) after an earlier part decided
                    cancelled += 1
                    continue
                results[k] = outcome
                if outcome[0] is not True and k < decided:
                    decided = k
                    for later in range(k + 1, len(parts)):
                        cancel[later] = 1
                    for other in running:
                        if futures[other] > k:
                            other.cancel()
    return results, cpu, cancelled


_cancel: SynchronizedArray[int] | None = None


def _adopt(cancel: SynchronizedArray[int]) -> None:
    global _cancel  # one per worker process, set once when it starts
    _cancel = cancel


def _search_slot(policy: Policy, packed: bytes, now: float, budget: int, slot: int
                 ) -> tuple[Outcome, float]:
    began = time.process_time()
    outcome = search(policy, _unpack(packed), now, budget, cancel=_cancel, slot=slot)
    return outcome, time.process_time() - began


def _pack(part: Sequence[Plain]) -> bytes:
    """A part as the workers get it: each distinct answer once, and the calls as tuples
    of plain values (pickling 80,000 answers one by one costs more than the search of a
    part that settles quickly)."""
    table: dict[Hashable, int] = {}
    unique: list[Hashable] = []
    rows = []
    for c in part:
        try:
            at = table.setdefault(c.answer, len(unique))
        except TypeError:  # unhashable: its own entry
            at = len(unique)
        if at == len(unique):
            unique.append(c.answer)
        rows.append((c.op, c.args, c.invoked, c.returned, c.thread, at))
    return pickle.dumps((unique, rows), pickle.HIGHEST_PROTOCOL)


def _unpack(packed: bytes) -> list[Plain]:
    unique, rows = pickle.loads(packed)
    return [Plain(op, args, invoked, returned, thread, unique[at])
            for op, args, invoked, returned, thread, at in rows]
