#!lua name=corral
-- corral's containers on Redis: each command one call, applied atomically by the
-- server. Every call first applies the container's due timers, then checks its
-- arguments (a call that fails changes nothing), then mutates, serves the oldest
-- waiters in the same call (a container never has waiters beside what they wait for)
-- and answers. Errors are "corral:<Class> <message>", mapped back to corral's errors.
--
-- KEYS: the container's meta, <base>:meta, one key (every other is named from it, under
--       the same hash tag, so in the same slot). The functions see them as ``keys``:
--       1 meta (HASH: kind, name, seq, now, due, subs, options, p:<property>, counts),
--       2 order (a list's LIST of record ids; a map's ZSET of keys, score 0, so in key
--       order), 3 values (HASH id or key -> packed record), 4 waiters (a list's LIST of
--       waiter ids, FIFO; a map keeps one LIST per key at <base>:wk:<key>), 5 waiter
--       info (HASH id -> "session|timer member|map key"), 6 timers (ZSET deadline ->
--       "<seq:016x>:<type>:<ref>").
-- Mailboxes: <base>:mb:<session>, base = KEYS[1] less ":meta": a LIST of outcomes,
--       "D|<waiter>|<packed>" (a list's or map's record), "G|<waiter>|<priority>|<seq>|
--       <packed>" (a queue's item and its order key), "P|<waiter>|<priority>|<packed>"
--       (a parked put let in) or "C|<waiter>|<Class>|<message>" (ended: a timeout).
-- ARGV: 1 the op, 2 the time ("server": the server's clock; seconds: the caller's;
--       "": the container's last), the op's own after.

local function fail(class, message)
  return redis.error_reply("corral:" .. class .. " " .. message)
end

-- The time a call runs at: the server's clock ("server"), the caller's (a number), or
-- the container's last (""), for a caller's command that takes no time; never before
-- ``last``, the latest any call brought (the kernel's time never goes back), which it
-- becomes (kept in meta as "now").
local function clock(keys, given, last)
  local now
  if given == "server" then
    local t = redis.call("TIME")
    now = tonumber(t[1]) + tonumber(t[2]) / 1e6
  elseif given ~= "" then now = tonumber(given) end
  last = tonumber(last or "0")
  if now == nil or now <= last then return last end
  redis.call("HSET", keys[1], "now", string.format("%.17g", now))
  return now
end

local function base(keys) return string.sub(keys[1], 1, -6) end

-- What this call read of meta up front: a job queue's lease and result TTL.
local meta = {}

local function mailbox(keys, session) return base(keys) .. ":mb:" .. session end

local function next_seq(keys) return redis.call("HINCRBY", keys[1], "seq", 1) end

-- The timer index's earliest deadline is kept in meta ("due"), never later than the
-- true one (a timer removed leaves it early), so that a call with nothing due skips
-- the index: ``due`` is this call's copy.
local due = 1 / 0  -- (math is not there while the library loads)

local function add_timer(keys, deadline, member)
  redis.call("ZADD", keys[6], string.format("%.17g", deadline), member)
  if deadline < due then
    due = deadline
    redis.call("HSET", keys[1], "due", string.format("%.17g", deadline))
  end
end

local function name(keys) return redis.call("HGET", keys[1], "name") end

-- Where a waiter queues: the container's main queue (a list's or queue's getters, a
-- job queue's claimers), a queue's putters (key "\1put": no map key a queue has), a
-- job's result readers (key "\2" .. the job id) or its map key's.
local PUTTER = "\1put"
local function queue_of(keys, key)
  if key == "" then return keys[4] end
  if key == PUTTER then return base(keys) .. ":wp" end
  if string.byte(key, 1) == 2 then return base(keys) .. ":wr:" .. string.sub(key, 2) end
  return base(keys) .. ":wk:" .. key
end

-- What a waiter carries (a putter's item, a claimer's lease), by waiter id.
local function payload_key(keys) return base(keys) .. ":wpi" end

-- A waiter's info: its session, its timer's member ("" for none), its map key (the
-- rest, which may hold "|" itself).
local function parse_info(info) return string.match(info, "^([^|]*)|([^|]*)|(.*)$") end

-- A waiter leaves its info and its timer (its queue is the caller's); its session and
-- map key.
local function forget(keys, waiter)
  local session, timer, key = parse_info(redis.call("HGET", keys[5], waiter))
  redis.call("HDEL", keys[5], waiter)
  if timer ~= "" then redis.call("ZREM", keys[6], timer) end
  return session, key
end

-- Take a waiter out of its queue and every index (a putter's item with it).
local function withdraw(keys, waiter)
  local _, _, key = parse_info(redis.call("HGET", keys[5], waiter))
  redis.call("LREM", queue_of(keys, key), 1, waiter)
  redis.call("HDEL", payload_key(keys), waiter)
  return forget(keys, waiter)
end

-- Events: while any session subscribes here (<base>:subs, HASH session -> its number
-- of subscriptions), every change appends its event to the container's stream,
-- <base>:ev, in mutation order, as fields n (the event's number: a reader that finds
-- one missing fell behind the stream's bound), e (its name), k (its key, as JSON) and
-- v (the packed value and metadata). ``listening`` is read once per call.
local MAX_EVENTS = 10000
local listening = false

local function emit(keys, event, key, packed)
  if not listening then return end
  local n = redis.call("HINCRBY", keys[1], "events", 1)
  redis.call("XADD", base(keys) .. ":ev", "MAXLEN", "~", MAX_EVENTS, "*", "n", n,
             "e", event, "k", key, "v", packed or "[null,null]")
end

local function jint(n) return string.format("%d", n) end
local function jstr(text) return cjson.encode(text) end

-- Per kind, what its own timers do (a job queue's: "<seq>:job:<id>") and what closing
-- a session does beyond withdrawing its waiters (a job queue's: releasing its claims).
local on_timer, on_close = {}, {}

-- A session ends here: its waiters are withdrawn (told Closed, if it lapsed: its
-- process may still read its mailbox, which a close deletes), its liveness deadline
-- goes, and its kind's own (a job queue releases its claims).
local function end_session(keys, now, session, lapsed)
  local left = {}  -- what its mailbox held (a close answers it: the caller may not know)
  local info = redis.call("HGETALL", keys[5])
  for i = 1, #info, 2 do
    if string.match(info[i + 1], "^([^|]*)|") == session then
      withdraw(keys, info[i])
      if lapsed then
        redis.call("RPUSH", mailbox(keys, session), "C|" .. info[i] .. "|Closed|session " ..
                   session .. " on '" .. name(keys) .. "' missed its heartbeat")
      end
    end
  end
  if lapsed then redis.call("HSET", base(keys) .. ":lapsed", session, 1)
  else
    left = redis.call("LRANGE", mailbox(keys, session), 0, -1)
    redis.call("DEL", mailbox(keys, session))
  end
  local live = base(keys) .. ":live"
  local timer = redis.call("HGET", live, session)
  if timer then
    redis.call("ZREM", keys[6], timer)
    redis.call("HDEL", live, session)
  end
  local held = redis.call("HGET", base(keys) .. ":subs", session)
  if held then
    redis.call("HDEL", base(keys) .. ":subs", session)
    listening = redis.call("HINCRBY", keys[1], "subs", -tonumber(held)) > 0
  end
  local close = on_close[redis.call("HGET", keys[1], "kind")]
  if close then close(keys, now, session) end
  return left
end

-- Apply the due timers one at a time, in (deadline, arming order), as each may disarm
-- later ones: waiters that timed out, and each kind's own.
local function advance(keys, now)
  if now < due then return end
  while true do
    local first = redis.call("ZRANGE", keys[6], 0, 0, "WITHSCORES")
    if not first[1] or tonumber(first[2]) > now then
      due = first[1] and tonumber(first[2]) or math.huge
      redis.call("HSET", keys[1], "due", first[1] and first[2] or "inf")
      return
    end
    local member = first[1]
    redis.call("ZREM", keys[6], member)
    local kind = redis.call("HGET", keys[1], "kind")
    local waiter = string.match(member, "^%x+:wait:(.*)$")
    local lapsed = string.match(member, "^%x+:sess:(.*)$")
    if lapsed then
      end_session(keys, now, lapsed, true)
    elseif waiter then
      local session, key = withdraw(keys, waiter)
      local message
      if key == PUTTER then
        message = "LimitExceeded|put on '" .. name(keys) .. "' timed out: the queue stayed full"
      else
        local op = "wait_pop_next"
        if kind == "queue" then op = "get"
        elseif kind == "job" then op = (key == "") and "claim" or "result"
        elseif key ~= "" then op = "wait_pop_key" end
        message = "Empty|" .. op .. " on '" .. name(keys) .. "' timed out"
      end
      redis.call("RPUSH", mailbox(keys, session), "C|" .. waiter .. "|" .. message)
    else
      on_timer[kind](keys, now, member)
    end
  end
end

-- Hand records to the oldest waiters while there are both.
local function feed(keys)
  while redis.call("LLEN", keys[4]) > 0 and redis.call("LLEN", keys[2]) > 0 do
    local waiter = redis.call("LPOP", keys[4])
    local session = forget(keys, waiter)
    local id = redis.call("LPOP", keys[2])
    local packed = redis.call("HGET", keys[3], id)
    redis.call("HDEL", keys[3], id)
    emit(keys, "pop_front", "0", packed)
    redis.call("RPUSH", mailbox(keys, session), "D|" .. waiter .. "|" .. packed)
  end
end

local function count(keys) return redis.call("LLEN", keys[2]) end

-- A list index (negative from the end) as a 0-based position, or an error.
local function index(keys, op, text, end_ok)
  local n, i = count(keys), tonumber(text)
  if i == nil or i ~= math.floor(i) then return nil, fail("InvalidArgument", op ..
      " on '" .. redis.call("HGET", keys[1], "name") .. "': index must be an int, not " .. text) end
  if i < 0 then i = i + n end
  local limit = n - 1
  if end_ok then limit = n end
  if i < 0 or i > limit then
    return nil, fail("NotFound", op .. " on '" .. redis.call("HGET", keys[1], "name") ..
                     "': index " .. text .. " is out of range for " .. n .. " records")
  end
  return i
end

local function new_record(keys, packed)
  local id = next_seq(keys)
  redis.call("HSET", keys[3], id, packed)
  return id
end

local function pop(keys, op)
  local n = count(keys)
  if n == 0 then
    return fail("Empty", op .. " on '" .. redis.call("HGET", keys[1], "name") ..
                "': the list is empty")
  end
  local id, key
  if op == "pop_front" then id, key = redis.call("LPOP", keys[2]), 0
  else id, key = redis.call("RPOP", keys[2]), n - 1 end
  local packed = redis.call("HGET", keys[3], id)
  redis.call("HDEL", keys[3], id)
  emit(keys, op, jint(key), packed)
  return {key, packed}
end

local shared, list, map = {}, {}, {}

-- Python's slice(start, end).indices(n), step 1.
local function bound(text, n, default)
  if text == "" then return default end
  local i = tonumber(text)
  if i < 0 then i = math.max(i + n, 0) end
  return math.min(i, n)
end

-- Records [start:end] (slice rules) as key, packed, key, packed...: a list's keys are
-- their positions, a map's its keys (``range`` reads the order key: LRANGE or ZRANGE).
local function records(keys, argv, n, range, by_position)
  local first, stop = bound(argv[3], n, 0), bound(argv[4], n, n)
  local out = {}
  if stop > first then
    for j, ref in ipairs(redis.call(range, keys[2], first, stop - 1)) do
      if by_position then out[#out + 1] = first + j - 1 else out[#out + 1] = ref end
      out[#out + 1] = redis.call("HGET", keys[3], ref)
    end
  end
  return out
end

-- Park a waiter last in line (a timeout arms its timer).
-- Keep ``session`` alive here for ``seconds`` more (see shared.heartbeat).
local function beat(keys, now, session, seconds)
  local live = base(keys) .. ":live"
  local old = redis.call("HGET", live, session)
  if old then redis.call("ZREM", keys[6], old) end
  local timer = string.format("%016x", next_seq(keys)) .. ":sess:" .. session
  add_timer(keys, now + tonumber(seconds), timer)
  redis.call("HSET", live, session, timer)
end

-- How long a session that parks a waiter in this call is kept alive ("": not at all),
-- from the call's time stamp ("<time>|<seconds>"), as if it had beaten at once.
local liveness = ""

local function park(keys, now, session, timeout, key)
  if liveness ~= "" then beat(keys, now, session, liveness) end
  local waiter = "w" .. next_seq(keys)
  local timer = ""
  if timeout ~= "" then
    timer = string.format("%016x", next_seq(keys)) .. ":wait:" .. waiter
    add_timer(keys, now + tonumber(timeout), timer)
  end
  redis.call("RPUSH", queue_of(keys, key), waiter)
  redis.call("HSET", keys[5], waiter, session .. "|" .. timer .. "|" .. key)
  return {"waiting", waiter}
end

-- create: ARGV 3 kind, 4 name, 5 what is wrong with the options ("": nothing), 6 the
-- number n of options given, then n (option, value) pairs, then the kind's defaults as
-- pairs. Options are kept in meta under their names, as the caller spelled them.
function shared.create(keys, now, argv)
  local kind = redis.call("HGET", keys[1], "kind")
  if kind and kind ~= argv[3] then
    return fail("WrongKind", "create '" .. argv[4] .. "' as " .. argv[3] .. ": it is a " .. kind)
  end
  if argv[5] ~= "" then return fail("InvalidArgument", argv[5]) end
  local given = 6 + 2 * tonumber(argv[6])
  if not kind then
    redis.call("HSET", keys[1], "kind", argv[3], "name", argv[4], "seq", 0, "arrivals", 0)
    for i = given + 1, #argv, 2 do redis.call("HSET", keys[1], argv[i], argv[i + 1]) end
    for i = 7, given, 2 do redis.call("HSET", keys[1], argv[i], argv[i + 1]) end
    return argv[3]
  end
  local differing = {}
  for i = 7, given, 2 do
    local has = redis.call("HGET", keys[1], argv[i])
    if has ~= argv[i + 1] then
      differing[#differing + 1] = argv[i] .. " " .. (has or "none") .. ", not " .. argv[i + 1]
    end
  end
  if #differing > 0 then
    return fail("InvalidArgument", "create '" .. argv[4] .. "': it exists with " ..
                table.concat(differing, "; "))
  end
  return argv[3]
end

-- Withdraw a parked waiter: 1, or 0 if it is no longer parked (served, timed out).
function shared.withdraw(keys, now, argv)
  local waiter = argv[3]
  if redis.call("HEXISTS", keys[5], waiter) == 0 then return 0 end
  withdraw(keys, waiter)
  return 1
end

-- close_session: ARGV 3 session; what its mailbox held, unread.
function shared.close_session(keys, now, argv)
  return end_session(keys, now, argv[3], false)
end

-- heartbeat: ARGV 3 session, 4 seconds: unless the session beats again within that
-- long, it ends here as if its process had closed it (its waiters told Closed).
-- Answers 0 if the session had lapsed here since its last beat (it ended: its claims
-- released, its waiters withdrawn, its subscriptions dropped), else 1.
function shared.heartbeat(keys, now, argv)
  beat(keys, now, argv[3], argv[4])
  return 1 - redis.call("HDEL", base(keys) .. ":lapsed", argv[3])
end

function shared.set_property(keys, now, argv)
  redis.call("HSET", keys[1], "p:" .. argv[3], argv[4])
  return 1
end

function shared.get_property(keys, now, argv)
  local value = redis.call("HGET", keys[1], "p:" .. argv[3])
  if not value then
    return fail("NotFound", "get_property on '" .. redis.call("HGET", keys[1], "name") ..
                "': no property '" .. argv[3] .. "'")
  end
  return value
end

function shared.tick(keys, now, argv) return 1 end

function shared.kind(keys, now, argv) return redis.call("HGET", keys[1], "kind") end
