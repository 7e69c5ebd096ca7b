// A run store in Node.js, written from specs/ alone (lifecycle.md, policy.md, wire.md):
// it speaks the wire protocol v1 on stdin/stdout, so the kit checks it with
//
//     runbound conform --exec "node examples/node/store.js"
//
// No npm dependencies. Simplicity over speed: runs live in one array in start order,
// every call copies it, so a refused call keeps the array it began with (I10: a refused
// call changes nothing, the lazy sweep it began included); retention scans every run.
// Each rule is named by its code in specs/lifecycle.md.
'use strict';

const readline = require('node:readline');

const STATUSES = ['pending', 'running', 'completed', 'failed', 'cancelled'];
const ACTIVE = new Set(['pending', 'running']);
// T1: the one transition table; terminal statuses are absorbing
const TRANSITIONS = {
  pending: ['running', 'failed', 'cancelled'],
  running: ['completed', 'failed', 'cancelled'],
  completed: [], failed: [], cancelled: [],
};
const MAX_INT = 2n ** 63n - 1n;
const MAX_RUN_ID = 128;
const MAX_INTERVAL = 1e9;
const CLOCKED = new Set(['start', 'transition', 'heartbeat', 'append_event', 'get',
  'list_runs', 'prune']);
const AFTER_CLOSE = new Set(['close', 'stop_cleanup_worker', 'cleanup_workers_alive']);

class Refusal extends Error {
  constructor(cls, runId, state, rule) {
    super(rule);
    Object.assign(this, { cls, runId, state, rule });
  }
}

// --- arguments: one rule each (R1, R2, R3, L2, L3, W1) --------------------------------
// An object is never a valid argument: it is how the kit sends what JSON cannot carry.
const LONE_SURROGATE = /\p{Cs}/u;
function shown(v) { const s = JSON.stringify(v); return s === undefined ? String(v) : s.slice(0, 60); }
function runId(v) {
  if (typeof v !== 'string' || LONE_SURROGATE.test(v) || [...v].length < 1
      || [...v].length > MAX_RUN_ID) {
    throw new Refusal('InvalidArgument', typeof v === 'string' ? v : shown(v), 'n/a',
      `R1: a run id is a string of 1 to ${MAX_RUN_ID} characters, got ${shown(v)}`);
  }
  return v;
}
function status(rid, v) {
  if (typeof v !== 'string' || !STATUSES.includes(v)) {
    throw new Refusal('InvalidArgument', rid, 'n/a', `R2: no status ${shown(v)}`);
  }
  return v;
}
function payload(rid, v) {
  if (typeof v !== 'string' || LONE_SURROGATE.test(v)) {
    throw new Refusal('InvalidArgument', rid, 'n/a', `R3: a payload is a string, got ${shown(v)}`);
  }
  return v;
}
function limit(v) {
  // JSON numbers are doubles here: 2**63 arrives exact, so compare with it
  if (typeof v !== 'number' || !Number.isInteger(v) || v < 1 || v >= 2 ** 63) {
    throw new Refusal('InvalidArgument', '*', 'n/a', `L2: limit is an int from 1 to 2**63-1, got ${shown(v)}`);
  }
  return v;
}
function cursor(v) {
  if (v === null || v === undefined) return null;
  if (typeof v !== 'string' || !/^[0-9]{1,19}$/.test(v) || BigInt(v) > MAX_INT) {
    throw new Refusal('InvalidArgument', '*', 'n/a', `L3: not a cursor of this store: ${shown(v)}`);
  }
  return Number(v);
}
function interval(v) {
  if (typeof v !== 'number' || !Number.isFinite(v) || v <= 0 || v > MAX_INTERVAL) {
    throw new Refusal('InvalidArgument', '*', 'n/a', `W1: 0 < interval <= 1e9, got ${shown(v)}`);
  }
  return v;
}
const ARGUMENTS = {
  start: (a) => [runId(a[0])],
  transition: (a) => { const r = runId(a[0]); return [r, status(r, a[1])]; },
  heartbeat: (a) => [runId(a[0])],
  append_event: (a) => { const r = runId(a[0]); return [r, payload(r, a[1])]; },
  get: (a) => [runId(a[0])],
  list_runs: (a) => [limit(a[0]), a[1] === null || a[1] === undefined ? null : status('*', a[1]),
    cursor(a[2])],
  start_cleanup_worker: (a) => [interval(a[0])],
};

// --- retention: the three tests (expired, stale, the eviction order) -------------------
function compareText(a, b) { // by code point, as the model sorts ids
  const x = [...a].map((c) => c.codePointAt(0));
  const y = [...b].map((c) => c.codePointAt(0));
  for (let i = 0; i < Math.min(x.length, y.length); i++) if (x[i] !== y[i]) return x[i] - y[i];
  return x.length - y.length;
}
const sortIds = (ids) => ids.sort(compareText);

const hooks = {
  expired: (run, p, now) => run.terminated_at !== null && p.ttl !== null
    && !(now < run.terminated_at + p.ttl),
  stale: (run, p, now) => ACTIVE.has(run.status) && p.stale_after !== null
    && !(now < run.updated_at + p.stale_after),
  // I1: drop the oldest terminated (then oldest started) terminal runs past max_terminal;
  // never an active one (I4)
  enforceCap(runs, p) {
    if (p.max_terminal === null) return [runs, []];
    const terminal = runs.filter((r) => !ACTIVE.has(r.status))
      .sort((a, b) => a.terminated_at - b.terminated_at || a.seq - b.seq);
    const excess = terminal.length - p.max_terminal;
    if (excess <= 0) return [runs, []];
    const victims = new Set(terminal.slice(0, excess).map((r) => r.run_id));
    return [runs.filter((r) => !victims.has(r.run_id)), sortIds([...victims])];
  },
};

// reap stale active runs (to failed), drop expired ones, then the cap
function sweep(runs, p, now) {
  const reaped = [];
  const kept = runs.map((r) => {
    if (!hooks.stale(r, p, now)) return r;
    reaped.push(r.run_id);
    return { ...r, status: 'failed', updated_at: now, terminated_at: now };
  });
  const gone = kept.filter((r) => hooks.expired(r, p, now)).map((r) => r.run_id);
  const [after, evicted] = hooks.enforceCap(kept.filter((r) => !gone.includes(r.run_id)), p);
  return [after, { reaped: sortIds(reaped), expired: sortIds(gone), evicted }];
}

// --- the store ------------------------------------------------------------------------
class Store {
  constructor(policy) {
    this.p = policy;
    this.runs = []; // start order (ascending seq), visible or not
    this.nextSeq = 1;
    this.mark = -Infinity; // C1: the highest clock reading any call made
    this.worker = false;
    this.closed = false;
  }

  call(op, args, reading) {
    if (!AFTER_CLOSE.has(op) && this.closed) throw new Refusal('StoreClosed', '*', 'closed', 'L1: the store is closed');
    const checked = (ARGUMENTS[op] || (() => []))(args);
    let now = null;
    if (CLOCKED.has(op)) { // C1: one reading; the mark rises whatever happens next
      const who = typeof checked[0] === 'string' ? checked[0] : '*';
      if (typeof reading !== 'number' || !Number.isFinite(reading)) {
        throw new Refusal('ClockError', who, 'n/a', `C1: the clock read ${shown(reading)}`);
      }
      this.mark = Math.max(this.mark, reading);
      now = this.mark;
    }
    return this[`op_${op}`](now, ...checked);
  }

  lazy(now) { return this.p.sweep === 'background' ? this.runs : sweep(this.runs, this.p, now)[0]; }
  find(runs, rid) { return runs.find((r) => r.run_id === rid); }
  visible(runs, rid, now) {
    const run = this.find(runs, rid);
    if (!run) throw new Refusal('UnknownRun', rid, 'absent', 'V1: no run with this id is retained');
    if (hooks.expired(run, this.p, now)) throw new Refusal('UnknownRun', rid, run.status, 'V2: the run is past its TTL');
    return run;
  }
  active(runs, rid, now, op) {
    const run = this.visible(runs, rid, now);
    if (!ACTIVE.has(run.status)) throw new Refusal('NotActive', rid, run.status, `T2: ${op} needs an active run`);
    return run;
  }
  put(runs, run) { return runs.map((r) => (r.run_id === run.run_id ? run : r)); }

  op_start(now, rid) {
    let runs = this.lazy(now);
    const old = this.find(runs, rid);
    if (old && ACTIVE.has(old.status)) throw new Refusal('RunAlreadyActive', rid, old.status, 'A1: a run with this id is already active');
    runs = runs.filter((r) => r.run_id !== rid);
    const active = runs.filter((r) => ACTIVE.has(r.status)).length;
    if (this.p.max_active !== null && active >= this.p.max_active) {
      throw new Refusal('AdmissionRefused', rid, old ? old.status : 'absent', `A2: ${active} active runs`);
    }
    const run = { run_id: rid, status: 'pending', created_at: now, updated_at: now,
      terminated_at: null, events: [], dropped_events: 0, seq: this.nextSeq };
    this.nextSeq += 1;
    this.runs = [...runs, run];
    return run;
  }
  op_transition(now, rid, target) {
    let runs = this.lazy(now);
    const old = this.visible(runs, rid, now);
    if (!TRANSITIONS[old.status].includes(target)) {
      throw new Refusal('IllegalTransition', rid, old.status, `T1: cannot move ${old.status} -> ${target}`);
    }
    const run = { ...old, status: target, updated_at: now,
      terminated_at: ACTIVE.has(target) ? null : now };
    runs = this.put(runs, run);
    if (!ACTIVE.has(target)) [runs] = hooks.enforceCap(runs, this.p);
    this.runs = runs;
    return run;
  }
  op_heartbeat(now, rid) {
    const runs = this.lazy(now);
    const run = { ...this.active(runs, rid, now, 'heartbeat'), updated_at: now };
    this.runs = this.put(runs, run);
    return run;
  }
  op_append_event(now, rid, text) {
    const runs = this.lazy(now);
    const old = this.active(runs, rid, now, 'append_event');
    let events = [...old.events, text];
    let dropped = old.dropped_events;
    const cap = this.p.max_events_per_run;
    if (cap !== null && events.length > cap) { dropped += events.length - cap; events = events.slice(events.length - cap); }
    this.runs = this.put(runs, { ...old, events, dropped_events: dropped, updated_at: now });
    return old.dropped_events + old.events.length + 1;
  }
  op_get(now, rid) { return this.visible(this.runs, rid, now); }
  op_list_runs(now, count, wanted, below) {
    const matching = [...this.runs].reverse().filter((r) => (wanted === null || r.status === wanted)
      && (below === null || r.seq < below) && !hooks.expired(r, this.p, now));
    const page = matching.slice(0, count);
    return { runs: page, next_cursor: matching.length > count ? String(page[page.length - 1].seq) : null };
  }
  op_prune(now) { const [runs, result] = sweep(this.runs, this.p, now); this.runs = runs; return result; }
  op_len() { return this.runs.length; }
  op_snapshot() { return this.runs; }
  op_start_cleanup_worker() { if (this.worker) return false; this.worker = true; return true; }
  op_stop_cleanup_worker() { const was = this.worker; this.worker = false; return was; }
  op_cleanup_workers_alive() { return this.worker ? 1 : 0; }
  op_close() { this.worker = false; this.closed = true; return null; }

  // The kit's tick: the worker's interval has passed. It sweeps as prune() at the
  // reading; a failed sweep (C1) is the worker's own business: logged, not replied.
  tick(reading) {
    if (this.closed || !this.worker) return null;
    try { this.call('prune', [], reading); } catch (e) {
      if (!(e instanceof Refusal)) throw e;
      process.stderr.write(`cleanup sweep failed: ${e.rule}\n`);
    }
    return null;
  }
}

// --- the wire ---------------------------------------------------------------------------
function reading(v) { // a finite number, or {"type": "float", "value": "nan" | "inf" | "-inf"}
  if (v && typeof v === 'object' && v.type === 'float') return { nan: NaN, inf: Infinity, '-inf': -Infinity }[v.value];
  return v;
}
const CAPABILITIES = { worker: true, events: true, heartbeat: true, durable: false,
  thread_safe: false, clock_granularity: 0 };

function serve() {
  let store = null;
  let policy = null;
  const answer = (msg) => {
    switch (msg.op) {
      case 'hello': return { protocol: 1, name: 'examples/node/store.js', capabilities: CAPABILITIES };
      case 'reset': policy = msg.policy; store = new Store(policy); return null;
      case 'reopen': store = new Store(policy); return null; // in memory: a restart starts empty
      case 'tick': return store.tick(reading(msg.now));
      default: return store.call(msg.op, msg.args || [], reading(msg.now));
    }
  };
  const lines = readline.createInterface({ input: process.stdin, crlfDelay: Infinity });
  lines.on('line', (line) => {
    const msg = JSON.parse(line);
    let reply;
    try {
      reply = { id: msg.id, result: answer(msg) };
    } catch (e) {
      if (!(e instanceof Refusal)) throw e;
      reply = { id: msg.id, error: { class: e.cls, run_id: e.runId, state: e.state, rule: e.rule } };
    }
    process.stdout.write(`${JSON.stringify(reply)}\n`);
  });
}

module.exports = { hooks, serve };
if (require.main === module) serve();
