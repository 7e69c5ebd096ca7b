-- runbound's Redis store: every operation is one call of this script, so it is atomic.
-- KEYS[1]: the key prefix, with a hash tag (e.g. "runbound:{jobs}:"), so every key of a
-- store is in one slot and the store works on Redis Cluster.
-- ARGV: op, now, ttl, max_terminal, max_active, max_events, stale_after, lazy, args...
-- Times arrive as Python's exact decimal strings and are stored as they came: Lua would
-- format numbers with 14 digits. Comparisons use tonumber(), the same IEEE doubles.
-- Every change goes through add()/remove(), which keep the indexes and a journal, so a
-- refused call rolls back everything, its lazy sweep included (runbound's I10).

local P = KEYS[1]
local op, now = ARGV[1], ARGV[2]
local function opt(s) if s == "" then return nil end return tonumber(s) end
local ttl, max_terminal, max_active = opt(ARGV[3]), opt(ARGV[4]), opt(ARGV[5])
local max_events, stale_after, lazy = opt(ARGV[6]), opt(ARGV[7]), ARGV[8] == "1"
local META, BY_SEQ, TERMINAL, LEASE = P .. "meta", P .. "seq", P .. "terminal", P .. "lease"
local ACTIVE = {pending = true, running = true}
local MOVES = {pending = {running = true, failed = true, cancelled = true},
               running = {completed = true, failed = true, cancelled = true}}
local journal = {}

local function ordered(run) return string.format("%020d", tonumber(run.seq)) .. run.id end

local function load(id)
  local f = redis.call("HMGET", P .. "run:" .. id, "seq", "status", "created", "updated",
                       "terminated", "events", "dropped")
  if not f[1] then return nil end
  return {id = id, seq = f[1], status = f[2], created = f[3], updated = f[4],
          terminated = f[5], events = f[6], dropped = f[7]}
end

local function index(run)
  redis.call("HSET", P .. "run:" .. run.id, "seq", run.seq, "status", run.status,
             "created", run.created, "updated", run.updated, "terminated", run.terminated,
             "events", run.events, "dropped", run.dropped)
  redis.call("ZADD", BY_SEQ, run.seq, run.id)
  redis.call("ZADD", P .. "status:" .. run.status, run.seq, run.id)
  if run.terminated ~= "" then
    redis.call("ZADD", TERMINAL, run.terminated, ordered(run))
    redis.call("HINCRBY", META, "terminal", 1)
  else
    redis.call("ZADD", LEASE, run.updated, ordered(run))
    redis.call("HINCRBY", META, "active", 1)
  end
end

local function unindex(run)
  redis.call("DEL", P .. "run:" .. run.id)
  redis.call("ZREM", BY_SEQ, run.id)
  redis.call("ZREM", P .. "status:" .. run.status, run.id)
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

local previous_clock = redis.call("HGET", META, "clock")

local function refuse(kind, id, state, rule)
  if previous_clock then redis.call("HSET", META, "clock", previous_clock)
  else redis.call("HDEL", META, "clock") end
  for i = #journal, 1, -1 do
    local entry = journal[i]
    if entry[1] then unindex(entry[2]) else index(entry[2]) end
  end
  return {"ERR", kind, id, state, rule}
end

local function flat(run)
  return {run.id, run.seq, run.status, run.created, run.updated, run.terminated,
          run.events, run.dropped}
end

local function count(key) return tonumber(redis.call("HGET", META, key) or "0") end

local function expired(run, t)
  return run.terminated ~= "" and ttl ~= nil and not (t < tonumber(run.terminated) + ttl)
end

local function stale(run, t)
  return run.terminated == "" and stale_after ~= nil
         and not (t < tonumber(run.updated) + stale_after)
end

local function id_of(member) return string.sub(member, 21) end

local function enforce_cap()
  local evicted = {}
  while max_terminal ~= nil and count("terminal") > max_terminal do
    local oldest = redis.call("ZRANGE", TERMINAL, 0, 0)[1]
    local run = load(id_of(oldest))
    remove(run)
    evicted[#evicted + 1] = run.id
  end
  return evicted
end

local function sweep(t, tnow)
  local reaped, gone = {}, {}
  while stale_after ~= nil do
    local first = redis.call("ZRANGE", LEASE, 0, 0)[1]
    if not first then break end
    local run = load(id_of(first))
    if not stale(run, t) then break end  -- in updated_at order: the rest are fresher
    remove(run)
    local new = copy(run)
    new.status, new.updated, new.terminated = "failed", tnow, tnow
    add(new)
    reaped[#reaped + 1] = run.id
  end
  while true do
    local first = redis.call("ZRANGE", TERMINAL, 0, 0)[1]
    if not first then break end
    local run = load(id_of(first))
    if not expired(run, t) then break end  -- in terminated_at order
    remove(run)
    gone[#gone + 1] = run.id
  end
  return {reaped, gone, enforce_cap()}
end

-- the effective now: never below the latest a mutation saw
local stored = redis.call("HGET", META, "clock")
local t, tnow = tonumber(now), now
if stored and tonumber(stored) > t then t, tnow = tonumber(stored), stored end

local READS = {get = true, list = true, len = true, snapshot = true}
if not READS[op] then
  redis.call("HSET", META, "clock", tnow)
  if op ~= "prune" and lazy then sweep(t, tnow) end
end

local function visible(id)
  local run = load(id)
  if not run then return nil, refuse("UnknownRun", id, "absent", "V1: no run with this id is retained") end
  if expired(run, t) then return nil, refuse("UnknownRun", id, run.status, "V2: the run is past its TTL") end
  return run
end

local function live(id, what)
  local run, err = visible(id)
  if not run then return nil, err end
  if not ACTIVE[run.status] then
    return nil, refuse("NotActive", id, run.status, "T2: " .. what .. " needs an active run")
  end
  return run
end

if op == "start" then
  local id = ARGV[9]
  local old = load(id)
  if old and ACTIVE[old.status] then
    return refuse("RunAlreadyActive", id, old.status, "S1: a run with this id is already active")
  end
  if old then remove(old) end
  if max_active ~= nil and count("active") >= max_active then
    return refuse("AdmissionRefused", id, old and old.status or "absent",
                  "S2: " .. count("active") .. " active runs, max_active is " .. max_active)
  end
  local seq = redis.call("HINCRBY", META, "next_seq", 1)
  local run = {id = id, seq = tostring(seq), status = "pending", created = tnow, updated = tnow,
               terminated = "", events = "[]", dropped = "0"}
  add(run)
  return flat(run)
elseif op == "transition" then
  local id, target = ARGV[9], ARGV[10]
  local run, err = visible(id)
  if not run then return err end
  if not (MOVES[run.status] or {})[target] then
    return refuse("IllegalTransition", id, run.status,
                  "T1: cannot move " .. run.status .. " -> " .. target)
  end
  remove(run)
  local new = copy(run)
  new.status, new.updated = target, tnow
  if not ACTIVE[target] then new.terminated = tnow end
  add(new)
  if not ACTIVE[target] then enforce_cap() end
  return flat(new)
elseif op == "heartbeat" then
  local run, err = live(ARGV[9], "heartbeat")
  if not run then return err end
  remove(run)
  local new = copy(run)
  new.updated = tnow
  add(new)
  return flat(new)
elseif op == "append" then
  local run, err = live(ARGV[9], "append_event")
  if not run then return err end
  local events = cjson.decode(run.events)
  local before = tonumber(run.dropped) + #events
  events[#events + 1] = ARGV[10]
  local dropped = tonumber(run.dropped)
  while max_events ~= nil and #events > max_events do
    table.remove(events, 1)
    dropped = dropped + 1
  end
  remove(run)
  local new = copy(run)
  new.events = (#events == 0) and "[]" or cjson.encode(events)
  new.dropped, new.updated = tostring(dropped), tnow
  add(new)
  return {before + 1}
elseif op == "get" then
  local run, err = visible(ARGV[9])
  if not run then return err end
  return flat(run)
elseif op == "list" then
  local limit, status, below = tonumber(ARGV[9]), ARGV[10], ARGV[11]
  local key = (status == "") and BY_SEQ or (P .. "status:" .. status)
  local top = (below == "") and "+inf" or ("(" .. below)
  local out = {}
  while true do
    local ids = redis.call("ZREVRANGEBYSCORE", key, top, "-inf", "LIMIT", 0, limit + 1)
    if #ids == 0 then return {out, ""} end
    for _, id in ipairs(ids) do
      local run = load(id)
      top = "(" .. run.seq
      if not expired(run, t) then
        if #out == limit then return {out, out[#out][2]} end
        out[#out + 1] = flat(run)
      end
    end
  end
elseif op == "prune" then
  return sweep(t, tnow)
elseif op == "len" then
  return count("active") + count("terminal")
elseif op == "snapshot" then
  local out = {}
  for _, id in ipairs(redis.call("ZRANGE", BY_SEQ, 0, -1)) do out[#out + 1] = flat(load(id)) end
  return out
end
return redis.error_reply("unknown op " .. tostring(op))
