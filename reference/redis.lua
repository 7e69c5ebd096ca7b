-- runbound's Redis store: every operation is one call of this script, so it is atomic.
--
-- KEYS[1] = P, the store's prefix "<head>{<tag>}:" (rule K1, see reference/redis.py).
-- Every key is P .. kind .. ":" .. rest, with kind one letter:
--   m:          hash: clock (the mark of rule C1), next_seq, active, terminal (counts)
--   s:          zset: run ids by seq, for listing
--   x:<status>  zset: run ids by seq, one per status
--   t:          zset: terminal runs by terminated_at (member: %020d seq .. id: ties by start)
--   l:          zset: active runs by updated_at (the lease), same members
--   r:<id>      hash: one run
--   q:<request> string: the reply recorded for a request id; "" once acknowledged
-- ARGV: op, request id ("" for reads), now ("" for the calls that do not read the clock),
-- ttl, max_terminal, max_active, max_events_per_run, stale_after ("" = off), lazy ("1" or
-- "0"), record TTL in ms, n, n acknowledged request ids, then the op's own arguments.
--
-- Rules of this script:
-- 1. Nothing is written before every argument has been checked. Redis keeps the writes a
--    script made before it failed, so a script that can fail after its first write can
--    corrupt the store for good (a NaN clock once reaped a run with NaN timestamps, then
--    failed at ZADD). Past the checks every command is well formed by construction, and
--    under maxmemory Redis refuses only a script's first write, never a later one.
-- 2. Every reply is tagged: {"ok", ...} or {"err", kind, run id, state, rule}. The client
--    reads the tag, never a value a user chose (the id "ERR" was once taken for an error).
-- 3. A call with a request id is applied at most once: its reply is recorded under q:,
--    and a retry of the same request (a client re-sending after a timeout) gets the
--    recorded reply. Once the client has the reply it acknowledges the id on a later call
--    and the record shrinks to "", which still turns away a late copy of the request
--    until the record's TTL ends.
-- 4. Every change to runs goes through add()/remove(), which keep the indexes and a
--    journal: a refused call rolls back everything, its lazy sweep included (I10). The
--    mark it raised stays (C1: every call that reads the clock raises it).
-- 5. Times arrive as Python's exact decimal strings and are stored as they came (Lua would
--    format them with 14 digits); comparisons use tonumber(), the same IEEE doubles.

local P = KEYS[1]
local op, request, now = ARGV[1], ARGV[2], ARGV[3]

-- --- checks: no write before all of them have passed ------------------------------------

local function refused(kind, who, rule) return {"err", kind, who, "n/a", rule} end

-- the rules' texts, one table for every store (model/rules.py), written in at load
local RULES = __RULES__
local function rule(code, fields)
  local words = string.gsub(RULES[code], "{([%w_]+)}",
                            function(k) return tostring(fields and fields[k]) end)
  return code .. ": " .. words
end

-- per op: does it read the clock, is it recorded, and its arguments' kinds in order
local OPS = {
  start = {clocked = true, recorded = true, args = {"id"}},
  transition = {clocked = true, recorded = true, args = {"id", "status"}},
  heartbeat = {clocked = true, recorded = true, args = {"id"}},
  append = {clocked = true, recorded = true, args = {"id", "payload"}},
  prune = {clocked = true, recorded = true, args = {}},
  get = {clocked = true, args = {"id"}},
  list = {clocked = true, args = {"limit", "status?", "cursor"}},
  len = {args = {}},
  snapshot = {args = {}},
}
local STATUSES = {pending = true, running = true, completed = true, failed = true,
                  cancelled = true}
local MAX_INT = "9223372036854775807"  -- 2**63-1, compared as a string: no double has it

local function finite(s)
  local x = tonumber(s)
  if x and x == x and x ~= math.huge and x ~= -math.huge then return x end
  return nil
end

-- a non-negative integer in ASCII decimal, at most 2**63-1
local function integer(s)
  return string.find(s, "^%d+$") ~= nil
         and (#s < #MAX_INT or (#s == #MAX_INT and s <= MAX_INT))
end

local function hex32(s) return #s == 32 and string.find(s, "^%x+$") ~= nil end

local CHECKS = {
  -- R1: 1 to 128 code points is 1 to 512 bytes of UTF-8 (the client checks code points)
  id = function(s) return #s >= 1 and #s <= 512 end,
  status = function(s) return STATUSES[s] == true end,
  ["status?"] = function(s) return s == "" or STATUSES[s] == true end,
  payload = function() return true end,
  limit = function(s) return integer(s) and tonumber(s) >= 1 end,
  cursor = function(s) return s == "" or integer(s) end,
}
local RULES = {id = "R1", status = "R2", ["status?"] = "R2", payload = "R3", limit = "L2",
               cursor = "L3"}

local function check()
  if type(P) ~= "string" or not string.find(P, "^[^{]*{[^}]+}:$") then
    return refused("InvalidArgument", tostring(P), "K1: the prefix must be <head>{<tag>}:")
  end
  local spec = OPS[op]
  if not spec then return refused("InvalidArgument", "*", "no operation " .. tostring(op)) end
  local nacks = tonumber(ARGV[11])
  if not (ARGV[11] and integer(ARGV[11]) and nacks <= 1024) then
    return refused("InvalidArgument", "*", "the count of acknowledged requests")
  end
  local first = 12 + nacks
  if #ARGV ~= first - 1 + #spec.args then
    return refused("InvalidArgument", "*", op .. " takes " .. #spec.args .. " arguments")
  end
  local who = (spec.args[1] == "id") and ARGV[first] or "*"
  for i, kind in ipairs(spec.args) do
    if not CHECKS[kind](ARGV[first + i - 1]) then
      return refused("InvalidArgument", who, RULES[kind] .. ": " .. op .. " argument " .. i)
    end
  end
  for i = 12, first - 1 do
    if not hex32(ARGV[i]) then return refused("InvalidArgument", who, "an acknowledged id") end
  end
  if not ((spec.recorded and hex32(request)) or (not spec.recorded and request == "")) then
    return refused("InvalidArgument", who, "a request id is 32 hex digits, for mutations")
  end
  for i = 4, 8 do
    local x = finite(ARGV[i])
    if ARGV[i] ~= "" and not (x and x >= 0) then
      return refused("InvalidArgument", who, "P1: policy field " .. (i - 3))
    end
  end
  if not (ARGV[9] == "0" or ARGV[9] == "1") then
    return refused("InvalidArgument", who, "P2: lazy is 0 or 1")
  end
  if not (integer(ARGV[10]) and tonumber(ARGV[10]) >= 1) then
    return refused("InvalidArgument", who, "the record TTL is a positive integer of ms")
  end
  if spec.clocked and not finite(now) then
    return refused("ClockError", who, rule("C1", {reading = now}))
  end
  if not spec.clocked and now ~= "" then
    return refused("InvalidArgument", who, op .. " does not read the clock")
  end
  return nil, spec, who, first, nacks
end

local bad, spec, who, first, nacks = check()
if bad then return bad end

-- --- the request's record (rule 3) -------------------------------------------------------

local Q = P .. "q:"
if request ~= "" then
  local done = redis.call("GET", Q .. request)
  if done == "" then
    return {"err", "OutcomeUnknown", who, "unknown",
            "N1: a late copy of a request already answered and acknowledged; not applied"}
  end
  if done then return cmsgpack.unpack(done) end
end
for i = 12, first - 1 do redis.call("SET", Q .. ARGV[i], "", "KEEPTTL", "XX") end

-- --- the store ---------------------------------------------------------------------------

local function opt(s) if s == "" then return nil end return tonumber(s) end
local ttl, max_terminal, max_active = opt(ARGV[4]), opt(ARGV[5]), opt(ARGV[6])
local max_events, stale_after, lazy = opt(ARGV[7]), opt(ARGV[8]), ARGV[9] == "1"
local META, BY_SEQ, TERMINAL, LEASE = P .. "m:", P .. "s:", P .. "t:", P .. "l:"
local ACTIVE = {pending = true, running = true}
local MOVES = {pending = {running = true, failed = true, cancelled = true},
               running = {completed = true, failed = true, cancelled = true}}
local journal = {}

local function run_key(id) return P .. "r:" .. id end
local function status_key(status) return P .. "x:" .. status end
local function ordered(run) return string.format("%020d", tonumber(run.seq)) .. run.id end
local function id_of(member) return string.sub(member, 21) end
local function count(field) return tonumber(redis.call("HGET", META, field) or "0") end

local function load(id)
  local f = redis.call("HMGET", run_key(id), "seq", "status", "created", "updated",
                       "terminated", "events", "dropped")
  if not f[1] then return nil end
  return {id = id, seq = f[1], status = f[2], created = f[3], updated = f[4],
          terminated = f[5], events = f[6], dropped = f[7]}
end

local function index(run)
  redis.call("HSET", run_key(run.id), "seq", run.seq, "status", run.status,
             "created", run.created, "updated", run.updated, "terminated", run.terminated,
             "events", run.events, "dropped", run.dropped)
  redis.call("ZADD", BY_SEQ, run.seq, run.id)
  redis.call("ZADD", status_key(run.status), run.seq, run.id)
  if run.terminated ~= "" then
    redis.call("ZADD", TERMINAL, run.terminated, ordered(run))
    redis.call("HINCRBY", META, "terminal", 1)
  else
    redis.call("ZADD", LEASE, run.updated, ordered(run))
    redis.call("HINCRBY", META, "active", 1)
  end
end

local function unindex(run)
  redis.call("DEL", run_key(run.id))
  redis.call("ZREM", BY_SEQ, run.id)
  redis.call("ZREM", status_key(run.status), run.id)
  if run.terminated ~= "" then
    redis.call("ZREM", TERMINAL, ordered(run))
    redis.call("HINCRBY", META, "terminal", -1)
  else
    redis.call("ZREM", LEASE, ordered(run))
    redis.call("HINCRBY", META, "active", -1)
  end
end

local function add(run) index(run); journal[#journal + 1] = {true, run} end
local function remove(run) unindex(run); journal[#journal + 1] = {false, run} end
local function copy(run) local c = {} for k, v in pairs(run) do c[k] = v end return c end

local function refuse(kind, id, state, rule)
  for i = #journal, 1, -1 do
    local entry = journal[i]
    if entry[1] then unindex(entry[2]) else index(entry[2]) end
  end
  return {"err", kind, id, state, rule}
end

local function flat(run)
  return {run.id, run.seq, run.status, run.created, run.updated, run.terminated,
          run.events, run.dropped}
end

local function expired(run, t)
  return run.terminated ~= "" and ttl ~= nil and not (t < tonumber(run.terminated) + ttl)
end

local function stale(run, t)
  return run.terminated == "" and stale_after ~= nil
         and not (t < tonumber(run.updated) + stale_after)
end

local function enforce_cap()
  local evicted = {}
  while max_terminal ~= nil and count("terminal") > max_terminal do
    local run = load(id_of(redis.call("ZRANGE", TERMINAL, 0, 0)[1]))
    remove(run)
    evicted[#evicted + 1] = run.id
  end
  return evicted
end

local function sweep(t, tnow)
  local reaped, gone = {}, {}
  while stale_after ~= nil do
    local first_member = redis.call("ZRANGE", LEASE, 0, 0)[1]
    if not first_member then break end
    local run = load(id_of(first_member))
    if not stale(run, t) then break end  -- in updated_at order: the rest are fresher
    remove(run)
    local new = copy(run)
    new.status, new.updated, new.terminated = "failed", tnow, tnow
    add(new)
    reaped[#reaped + 1] = run.id
  end
  while true do
    local first_member = redis.call("ZRANGE", TERMINAL, 0, 0)[1]
    if not first_member then break end
    local run = load(id_of(first_member))
    if not expired(run, t) then break end  -- in terminated_at order
    remove(run)
    gone[#gone + 1] = run.id
  end
  return {reaped, gone, enforce_cap()}
end

-- C1: the effective time is max(mark, reading); the mark is raised by this call, whatever
-- its outcome (a read, a refusal), so time as the store sees it never goes back
local t, tnow
if spec.clocked then
  t, tnow = tonumber(now), now
  local mark = redis.call("HGET", META, "clock")
  if mark and tonumber(mark) >= t then
    t, tnow = tonumber(mark), mark
  else
    redis.call("HSET", META, "clock", now)
  end
end

local MUTATIONS = {start = true, transition = true, heartbeat = true, append = true}
if MUTATIONS[op] and lazy then sweep(t, tnow) end

local function visible(id)
  local run = load(id)
  if not run then return nil, refuse("UnknownRun", id, "absent", rule("V1")) end
  if expired(run, t) then return nil, refuse("UnknownRun", id, run.status, rule("V2")) end
  return run
end

local function live(id, what)
  local run, err = visible(id)
  if not run then return nil, err end
  if not ACTIVE[run.status] then
    return nil, refuse("NotActive", id, run.status, rule("T2", {op = what}))
  end
  return run
end

local function ok(values)
  local reply = {"ok"}
  for _, v in ipairs(values) do reply[#reply + 1] = v end
  return reply
end

local function perform(a, b, c)
  if op == "start" then
    local old = load(a)
    if old and ACTIVE[old.status] then
      return refuse("RunAlreadyActive", a, old.status, rule("A1"))
    end
    if old then remove(old) end
    if max_active ~= nil and count("active") >= max_active then
      return refuse("AdmissionRefused", a, old and old.status or "absent",
                    rule("A2", {active = count("active"), max_active = ARGV[6]}))
    end
    local seq = redis.call("HINCRBY", META, "next_seq", 1)
    local run = {id = a, seq = string.format("%d", seq), status = "pending", created = tnow,
                 updated = tnow, terminated = "", events = "[]", dropped = "0"}
    add(run)
    return ok(flat(run))
  elseif op == "transition" then
    local run, err = visible(a)
    if not run then return err end
    if not (MOVES[run.status] or {})[b] then
      local names = {}
      for name in pairs(MOVES[run.status] or {}) do names[#names + 1] = name end
      table.sort(names)
      local allowed = #names > 0 and table.concat(names, ", ") or "none: it is terminal"
      return refuse("IllegalTransition", a, run.status,
                    rule("T1", {current = run.status, target = b, allowed = allowed}))
    end
    remove(run)
    local new = copy(run)
    new.status, new.updated = b, tnow
    if not ACTIVE[b] then new.terminated = tnow end
    add(new)
    if not ACTIVE[b] then enforce_cap() end
    return ok(flat(new))
  elseif op == "heartbeat" then
    local run, err = live(a, "heartbeat")
    if not run then return err end
    remove(run)
    local new = copy(run)
    new.updated = tnow
    add(new)
    return ok(flat(new))
  elseif op == "append" then
    local run, err = live(a, "append_event")
    if not run then return err end
    local events = cjson.decode(run.events)
    local before = tonumber(run.dropped) + #events
    events[#events + 1] = b
    local dropped = tonumber(run.dropped)
    while max_events ~= nil and #events > max_events do
      table.remove(events, 1)
      dropped = dropped + 1
    end
    remove(run)
    local new = copy(run)
    new.events = (#events == 0) and "[]" or cjson.encode(events)
    new.dropped, new.updated = string.format("%d", dropped), tnow
    add(new)
    return {"ok", string.format("%d", before + 1)}
  elseif op == "get" then
    local run, err = visible(a)
    if not run then return err end
    return ok(flat(run))
  elseif op == "list" then
    local key = (b == "") and BY_SEQ or status_key(b)
    local top = (c == "") and "+inf" or ("(" .. c)
    -- a limit may be 2**63-1, past what a double holds exactly: fetch no more than the
    -- set holds, plus one to tell whether a next page exists
    local limit = tonumber(a)
    local batch = string.format("%d", math.min(limit, redis.call("ZCARD", key)) + 1)
    local out = {}
    while true do
      local ids = redis.call("ZREVRANGEBYSCORE", key, top, "-inf", "LIMIT", 0, batch)
      if #ids == 0 then return {"ok", out, ""} end
      for _, id in ipairs(ids) do
        local run = load(id)
        top = "(" .. run.seq
        if not expired(run, t) then
          if #out == limit then return {"ok", out, out[#out][2]} end
          out[#out + 1] = flat(run)
        end
      end
    end
  elseif op == "prune" then
    local result = sweep(t, tnow)
    return {"ok", result[1], result[2], result[3]}
  elseif op == "len" then
    return {"ok", string.format("%d", count("active") + count("terminal"))}
  else  -- snapshot: the only op left, as check() allows only those in OPS
    local out = {}
    for _, id in ipairs(redis.call("ZRANGE", BY_SEQ, 0, -1)) do out[#out + 1] = flat(load(id)) end
    return {"ok", out}
  end
end

local reply = perform(ARGV[first], ARGV[first + 1], ARGV[first + 2])
if request ~= "" then
  redis.call("SET", Q .. request, cmsgpack.pack(reply), "PX", ARGV[10])
end
return reply
