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
  emit(keys, "put", priority, packed)
  local getter = redis.call("LPOP", keys[4])
  if getter then
    emit(keys, "get", priority, packed)
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
    emit(keys, "get", string.format("%d", priority), packed)
    local putter = nil
    if not queue_full(keys) then  -- (a give-back may have left it past max_length)
      putter = redis.call("LPOP", base(keys) .. ":wp")
    end
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

-- give_back: an item taken by a caller that is gone goes back to its place, ARGV 3
-- priority, 4 arrival, 5 packed item: to the oldest getter if one waits, else into
-- the queue, past max_length if need be (the kernel's exact inverse of the get).
function queue.give_back(keys, now, argv)
  local priority, seq, packed = argv[3], tonumber(argv[4]), argv[5]
  local member = string.format("%016x", seq)
  if seq < 1 or seq > tonumber(redis.call("HGET", keys[1], "arrivals")) then
    return fail("InvalidArgument", "give_back on '" .. name(keys) .. "': no item came in as "
                .. argv[4])
  end
  if redis.call("HEXISTS", keys[3], member) == 1 then
    return fail("InvalidArgument", "give_back on '" .. name(keys) .. "': item (" .. priority
                .. ", " .. argv[4] .. ") is in the queue already")
  end
  local getter = redis.call("LPOP", keys[4])
  if getter then
    local session = forget(keys, getter)
    redis.call("RPUSH", mailbox(keys, session), "G|" .. getter .. "|" .. priority .. "|" ..
               argv[4] .. "|" .. packed)
    return 1
  end
  redis.call("ZADD", keys[2], string.format("%.17g", -tonumber(priority)), member)
  redis.call("HSET", keys[3], member, packed)
  return 1
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
