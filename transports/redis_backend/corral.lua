#!lua name=corral
-- corral's containers on Redis: each command one call, applied atomically by the
-- server. Every call first applies the container's due timers, then checks its
-- arguments (a call that fails changes nothing), then mutates, serves the oldest
-- waiters in the same call (a container never has waiters beside what they wait for)
-- and answers. Errors are "corral:<Class> <message>", mapped back to corral's errors.
--
-- KEYS: 1 meta (HASH: kind, name, seq, now, p:<property>), 2 order (a list's LIST of
--       record ids; a map's ZSET of keys, score 0, so in key order), 3 values (HASH id
--       or key -> packed record), 4 waiters (a list's LIST of waiter ids, FIFO; a map
--       keeps one LIST per key at <base>:wk:<key>), 5 waiter info (HASH id ->
--       "session|timer member|map key"), 6 timers (ZSET deadline ->
--       "<seq:016x>:wait:<waiter>").
-- Mailboxes: <base>:mb:<session> (LIST of "D|<waiter>|<packed>" or
--       "C|<waiter>|<Class>|<message>"), base = KEYS[1] less ":meta".
-- ARGV: 1 the op, 2 the time ("server": the server's clock; seconds: the caller's;
--       "": the container's last), the op's own after.

local function fail(class, message)
  return redis.error_reply("corral:" .. class .. " " .. message)
end

-- The time a call runs at: the server's clock ("server"), the caller's (a number), or
-- the container's last (""), for a caller's command that takes no time.
local function clock(keys, given)
  if given == "server" then
    local t = redis.call("TIME")
    return tonumber(t[1]) + tonumber(t[2]) / 1e6
  end
  if given == "" then return tonumber(redis.call("HGET", keys[1], "now") or "0") end
  return tonumber(given)
end

local function base(keys) return string.sub(keys[1], 1, -6) end

local function mailbox(keys, session) return base(keys) .. ":mb:" .. session end

local function next_seq(keys) return redis.call("HINCRBY", keys[1], "seq", 1) end

-- The kernel's time never goes back: the latest now any call brought.
local function tick(keys, now)
  local last = redis.call("HGET", keys[1], "now")
  if last and tonumber(last) >= now then return tonumber(last) end
  redis.call("HSET", keys[1], "now", string.format("%.17g", now))
  return now
end

local function name(keys) return redis.call("HGET", keys[1], "name") end

-- Where a waiter queues: the list's one queue, or its map key's.
-- Where a waiter queues: the container's main queue (a list's or queue's getters), a
-- queue's putters (key "\1put": no map key a queue has), or its map key's.
local PUTTER = "\1put"
local function queue_of(keys, key)
  if key == "" then return keys[4] end
  if key == PUTTER then return base(keys) .. ":wp" end
  return base(keys) .. ":wk:" .. key
end

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
  if key == PUTTER then redis.call("HDEL", base(keys) .. ":wpi", waiter) end
  return forget(keys, waiter)
end

-- Apply the due timers, in (deadline, arming order): waiters that timed out.
local function advance(keys, now)
  local due = redis.call("ZRANGEBYSCORE", keys[6], "-inf", string.format("%.17g", now))
  for _, member in ipairs(due) do
    local waiter = string.match(member, ":wait:(.*)$")
    local session, key = withdraw(keys, waiter)
    local kind, message = redis.call("HGET", keys[1], "kind"), nil
    if key == PUTTER then
      message = "LimitExceeded|put on '" .. name(keys) .. "' timed out: the queue stayed full"
    else
      local op = "wait_pop_next"
      if kind == "queue" then op = "get" elseif key ~= "" then op = "wait_pop_key" end
      message = "Empty|" .. op .. " on '" .. name(keys) .. "' timed out"
    end
    redis.call("RPUSH", mailbox(keys, session), "C|" .. waiter .. "|" .. message)
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
  return {key, packed}
end

local shared, list, map = {}, {}, {}

-- create: ARGV 3 kind, 4 name, 5 max_length ("" = none given: the default, or what
-- the container has).
function shared.create(keys, now, argv)
  local kind = redis.call("HGET", keys[1], "kind")
  if kind and kind ~= argv[3] then
    return fail("WrongKind", "create '" .. argv[4] .. "' as " .. argv[3] .. ": it is a " .. kind)
  end
  local max_length = argv[5] or ""
  if not kind then
    redis.call("HSET", keys[1], "kind", argv[3], "name", argv[4], "seq", 0, "arrivals", 0,
               "max_length", max_length)
  elseif max_length ~= "" and max_length ~= redis.call("HGET", keys[1], "max_length") then
    return fail("InvalidArgument", "create '" .. argv[4] .. "': it exists with max_length " ..
                (redis.call("HGET", keys[1], "max_length") or "none") .. ", not " .. max_length)
  end
  return argv[3]
end

function list.push_back(keys, now, argv)
  redis.call("RPUSH", keys[2], new_record(keys, argv[3]))
  feed(keys)
  return 1
end

function list.push_front(keys, now, argv)
  redis.call("LPUSH", keys[2], new_record(keys, argv[3]))
  feed(keys)
  return 1
end

function list.pop_front(keys, now, argv) return pop(keys, "pop_front") end
function list.pop_back(keys, now, argv) return pop(keys, "pop_back") end

function list.get(keys, now, argv)
  local i, err = index(keys, "get", argv[3], false)
  if err then return err end
  return {i, redis.call("HGET", keys[3], redis.call("LINDEX", keys[2], i))}
end

function list.set(keys, now, argv)
  local i, err = index(keys, "set", argv[3], false)
  if err then return err end
  redis.call("HSET", keys[3], redis.call("LINDEX", keys[2], i), argv[4])
  return 1
end

function list.insert(keys, now, argv)
  local i, err = index(keys, "insert", argv[3], true)
  if err then return err end
  local id = new_record(keys, argv[4])
  if i == count(keys) then
    redis.call("RPUSH", keys[2], id)
  else
    redis.call("LINSERT", keys[2], "BEFORE", redis.call("LINDEX", keys[2], i), id)
  end
  feed(keys)
  return 1
end

function list.delete(keys, now, argv)
  local i, err = index(keys, "delete", argv[3], false)
  if err then return err end
  local id = redis.call("LINDEX", keys[2], i)
  redis.call("LREM", keys[2], 1, id)
  redis.call("HDEL", keys[3], id)
  return 1
end

function list.count(keys, now, argv) return count(keys) end

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

function list.query(keys, now, argv) return records(keys, argv, count(keys), "LRANGE", true) end

function list.clear(keys, now, argv)
  redis.call("DEL", keys[2], keys[3])
  return 1
end

-- Park a waiter last in line (a timeout arms its timer).
local function park(keys, now, session, timeout, key)
  local waiter = "w" .. next_seq(keys)
  local timer = ""
  if timeout ~= "" then
    timer = string.format("%016x", next_seq(keys)) .. ":wait:" .. waiter
    redis.call("ZADD", keys[6], string.format("%.17g", now + tonumber(timeout)), timer)
  end
  redis.call("RPUSH", queue_of(keys, key), waiter)
  redis.call("HSET", keys[5], waiter, session .. "|" .. timer .. "|" .. key)
  return {"waiting", waiter}
end

-- wait_pop_next: the front record now, or a waiter parked last in line; ARGV 3
-- session, 4 timeout ("" = none).
function list.wait_pop_next(keys, now, argv)
  local session, timeout = argv[3], argv[4]
  if count(keys) > 0 then return pop(keys, "pop_front") end
  if timeout ~= "" and tonumber(timeout) == 0 then
    return fail("Empty", "wait_pop_next on '" .. redis.call("HGET", keys[1], "name") ..
                "': the list is empty")
  end
  return park(keys, now, session, timeout, "")
end

-- Withdraw a parked waiter: 1, or 0 if it is no longer parked (served, timed out).
function shared.withdraw(keys, now, argv)
  local waiter = argv[3]
  if redis.call("HEXISTS", keys[5], waiter) == 0 then return 0 end
  withdraw(keys, waiter)
  return 1
end

-- A session closed: its waiters here are withdrawn.
function shared.close_session(keys, now, argv)
  local session = argv[3]
  local info = redis.call("HGETALL", keys[5])
  for i = 1, #info, 2 do
    if string.match(info[i + 1], "^([^|]*)|") == session then withdraw(keys, info[i]) end
  end
  redis.call("DEL", mailbox(keys, session))
  return 1
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

function list.statistics(keys, now, argv)
  return {count(keys), redis.call("LLEN", keys[4])}
end

function shared.tick(keys, now, argv) return 1 end

function shared.kind(keys, now, argv) return redis.call("HGET", keys[1], "kind") end

-- The invariants, for tests: no waiters beside records; every index agrees.
function list.check(keys, now, argv)
  if redis.call("LLEN", keys[4]) > 0 and count(keys) > 0 then
    return fail("AssertionError", "waiters beside records")
  end
  if redis.call("HLEN", keys[3]) ~= count(keys) then
    return fail("AssertionError", "records and values differ")
  end
  if redis.call("HLEN", keys[5]) ~= redis.call("LLEN", keys[4]) then
    return fail("AssertionError", "waiters and their info differ")
  end
  return 1
end


-- Maps: records by string key, in key order (the order ZSET); waiters per key.

local function map_count(keys) return redis.call("ZCARD", keys[2]) end

local function take(keys, key)
  local packed = redis.call("HGET", keys[3], key)
  redis.call("HDEL", keys[3], key)
  redis.call("ZREM", keys[2], key)
  return packed
end

-- Store a record; the oldest waiter on its key, if any, takes it at once.
local function store(keys, key, packed)
  redis.call("HSET", keys[3], key, packed)
  redis.call("ZADD", keys[2], 0, key)
  local waiter = redis.call("LPOP", queue_of(keys, key))
  if waiter then
    local session = forget(keys, waiter)
    redis.call("RPUSH", mailbox(keys, session), "D|" .. waiter .. "|" .. take(keys, key))
  end
end

function map.set(keys, now, argv) store(keys, argv[3], argv[4]) return 1 end

function map.insert(keys, now, argv)
  if redis.call("HEXISTS", keys[3], argv[3]) == 1 then
    return fail("AlreadyExists", "insert on '" .. name(keys) .. "': key '" .. argv[3] ..
                "' is present")
  end
  store(keys, argv[3], argv[4])
  return 1
end

-- get: ARGV 3 "k" and a key, or "i" and a position in key order (negative from the end).
function map.get(keys, now, argv)
  local key = argv[4]
  if argv[3] == "i" then
    local n, i = map_count(keys), tonumber(argv[4])
    if i < 0 then i = i + n end
    if i < 0 or i >= n then
      return fail("NotFound", "get on '" .. name(keys) .. "': position " .. argv[4] ..
                  " is out of range for " .. n .. " records")
    end
    key = redis.call("ZRANGE", keys[2], i, i)[1]
  end
  local packed = redis.call("HGET", keys[3], key)
  if not packed then
    return fail("NotFound", "get on '" .. name(keys) .. "': no key '" .. key .. "'")
  end
  return {key, packed}
end

function map.delete(keys, now, argv)
  if redis.call("HEXISTS", keys[3], argv[3]) == 0 then
    return fail("NotFound", "delete on '" .. name(keys) .. "': no key '" .. argv[3] .. "'")
  end
  take(keys, argv[3])
  return 1
end

function map.count(keys, now, argv) return map_count(keys) end

function map.keys(keys, now, argv) return redis.call("ZRANGE", keys[2], 0, -1) end

function map.query(keys, now, argv)
  return records(keys, argv, map_count(keys), "ZRANGE", false)
end

map.clear = list.clear

-- wait_pop_key: the key's record now, or a waiter parked last in the key's line;
-- ARGV 3 session, 4 timeout ("" = none), 5 the key.
function map.wait_pop_key(keys, now, argv)
  local session, timeout, key = argv[3], argv[4], argv[5]
  if redis.call("HEXISTS", keys[3], key) == 1 then return {key, take(keys, key)} end
  if timeout ~= "" and tonumber(timeout) == 0 then
    return fail("Empty", "wait_pop_key on '" .. name(keys) .. "': no key '" .. key .. "'")
  end
  return park(keys, now, session, timeout, key)
end

function map.statistics(keys, now, argv)
  return {map_count(keys), redis.call("HLEN", keys[5])}
end

function map.check(keys, now, argv)
  if redis.call("HLEN", keys[3]) ~= map_count(keys) then
    return fail("AssertionError", "records and key order differ")
  end
  local info = redis.call("HGETALL", keys[5])
  for i = 1, #info, 2 do
    local _, _, key = parse_info(info[i + 1])
    if redis.call("HEXISTS", keys[3], key) == 1 then
      return fail("AssertionError", "a waiter on present key " .. key)
    end
  end
  return 1
end


-- Queues: items by (-priority, arrival) in a ZSET (score -priority, member the arrival
-- as 16 hex digits, so ties keep arrival order); getters FIFO; putters wait on a full
-- bounded queue with their item in <base>:wpi.

local queue = {}

local function queue_full(keys)
  local max_length = tonumber(redis.call("HGET", keys[1], "max_length"))
  return max_length ~= nil and redis.call("ZCARD", keys[2]) >= max_length
end

-- An item comes in: straight to the oldest getter (the queue is then empty), or queued.
local function queue_add(keys, priority, packed)
  local seq = redis.call("HINCRBY", keys[1], "arrivals", 1)
  local getter = redis.call("LPOP", keys[4])
  if getter then
    local session = forget(keys, getter)
    redis.call("RPUSH", mailbox(keys, session), "G|" .. getter .. "|" .. priority .. "|" ..
               seq .. "|" .. packed)
    return
  end
  local member = string.format("%016x", seq)
  redis.call("ZADD", keys[2], string.format("%.17g", -tonumber(priority)), member)
  redis.call("HSET", keys[3], member, packed)
end

-- queue_put: ARGV 3 session, 4 timeout ("" = none), 5 priority, 6 packed item.
function queue.queue_put(keys, now, argv)
  local session, timeout, priority, packed = argv[3], argv[4], argv[5], argv[6]
  if not queue_full(keys) then
    queue_add(keys, priority, packed)
    return 1
  end
  if timeout ~= "" and tonumber(timeout) == 0 then
    return fail("LimitExceeded", "put on '" .. name(keys) .. "': the queue is full (" ..
                redis.call("HGET", keys[1], "max_length") .. " items)")
  end
  local waiting = park(keys, now, session, timeout, PUTTER)
  redis.call("HSET", base(keys) .. ":wpi", waiting[2], priority .. "|" .. packed)
  return waiting
end

-- queue_get: ARGV 3 session, 4 timeout; the first item with its priority and arrival.
function queue.queue_get(keys, now, argv)
  local session, timeout = argv[3], argv[4]
  local first = redis.call("ZRANGE", keys[2], 0, 0, "WITHSCORES")
  if #first > 0 then
    local member, priority = first[1], -tonumber(first[2])
    local packed = redis.call("HGET", keys[3], member)
    redis.call("ZREM", keys[2], member)
    redis.call("HDEL", keys[3], member)
    local putter = redis.call("LPOP", base(keys) .. ":wp")
    if putter then  -- a slot opened: the oldest putter's item comes in
      local putter_session = forget(keys, putter)
      local payload = redis.call("HGET", base(keys) .. ":wpi", putter)
      redis.call("HDEL", base(keys) .. ":wpi", putter)
      local put_priority, put_packed = string.match(payload, "^([^|]*)|(.*)$")
      queue_add(keys, put_priority, put_packed)
      redis.call("RPUSH", mailbox(keys, putter_session), "P|" .. putter .. "|" ..
                 put_priority .. "|" .. put_packed)
    end
    return {string.format("%d", priority), tonumber(member, 16), packed}
  end
  if timeout ~= "" and tonumber(timeout) == 0 then
    return fail("Empty", "get on '" .. name(keys) .. "': the queue is empty")
  end
  return park(keys, now, session, timeout, "")
end

function queue.count(keys, now, argv) return redis.call("ZCARD", keys[2]) end

function queue.statistics(keys, now, argv)
  return {redis.call("ZCARD", keys[2]), redis.call("HLEN", keys[5])}
end

function queue.check(keys, now, argv)
  if redis.call("LLEN", keys[4]) > 0 and redis.call("ZCARD", keys[2]) > 0 then
    return fail("AssertionError", "getters beside items")
  end
  if redis.call("LLEN", base(keys) .. ":wp") > 0 and not queue_full(keys) then
    return fail("AssertionError", "putters while not full")
  end
  if redis.call("HLEN", base(keys) .. ":wpi") ~= redis.call("LLEN", base(keys) .. ":wp") then
    return fail("AssertionError", "putters and their items differ")
  end
  return 1
end


-- Feeds: items by string id in publish order (the order ZSET, scored by a publish
-- counter, so an edit moves its item last); fresh ids count up, skipping given ones.

local feed = {}

local function feed_remove(keys, id)
  redis.call("ZREM", keys[2], id)
  redis.call("HDEL", keys[3], id)
end

-- publish: ARGV 3 packed item, 4 id ("" = a fresh one).
function feed.publish(keys, now, argv)
  local id = argv[4]
  if id == "" then
    repeat
      id = tostring(redis.call("HINCRBY", keys[1], "last_id", 1))
    until redis.call("HEXISTS", keys[3], id) == 0
  end
  local max_length = tonumber(redis.call("HGET", keys[1], "max_length"))
  if max_length ~= nil then  -- Thoonk's rule: keep the newest max_length - 1 others
    local excess = redis.call("ZCARD", keys[2]) - (max_length - 1)
    if excess > 0 then
      for _, old in ipairs(redis.call("ZRANGE", keys[2], 0, excess - 1)) do
        if old ~= id then feed_remove(keys, old) end
      end
    end
  end
  redis.call("HSET", keys[3], id, argv[3])
  redis.call("ZADD", keys[2], next_seq(keys), id)
  return id
end

function feed.retract(keys, now, argv)
  if redis.call("HEXISTS", keys[3], argv[3]) == 0 then
    return fail("NotFound", "retract on '" .. name(keys) .. "': no item '" .. argv[3] .. "'")
  end
  feed_remove(keys, argv[3])
  return 1
end

function feed.get(keys, now, argv)
  local packed = redis.call("HGET", keys[3], argv[4])
  if not packed then
    return fail("NotFound", "get on '" .. name(keys) .. "': no item '" .. argv[4] .. "'")
  end
  return {argv[4], packed}
end

function feed.ids(keys, now, argv) return redis.call("ZRANGE", keys[2], 0, -1) end

function feed.items(keys, now, argv)
  return records(keys, {nil, nil, "", ""}, redis.call("ZCARD", keys[2]), "ZRANGE", false)
end

function feed.count(keys, now, argv) return redis.call("ZCARD", keys[2]) end

function feed.statistics(keys, now, argv) return {redis.call("ZCARD", keys[2]), 0} end

function feed.check(keys, now, argv)
  local max_length = tonumber(redis.call("HGET", keys[1], "max_length"))
  if max_length ~= nil and redis.call("ZCARD", keys[2]) > max_length then
    return fail("AssertionError", "over max_length")
  end
  if redis.call("HLEN", keys[3]) ~= redis.call("ZCARD", keys[2]) then
    return fail("AssertionError", "items and their order differ")
  end
  return 1
end

local kinds = {volatile_list = list, volatile_map = map, queue = queue, feed = feed}

local function call(keys, argv)
  local op = shared[argv[1]]
  if argv[1] ~= "create" then
    local kind = redis.call("HGET", keys[1], "kind")
    if not kind then return fail("NotFound", argv[1] .. ": no container") end
    op = op or kinds[kind][argv[1]]
    if op == nil then
      return fail("WrongKind", argv[1] .. " on '" .. name(keys) .. "': a " .. kind ..
                  " has no " .. argv[1])
    end
  end
  local now = tick(keys, clock(keys, argv[2]))
  advance(keys, now)
  return op(keys, now, argv)
end

redis.register_function("corral", call)
