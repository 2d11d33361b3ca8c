-- Maps: records by string key, in key order (the order ZSET); waiters per key.

local function map_count(keys) return redis.call("ZCARD", keys[2]) end

local function take(keys, key)
  local packed = redis.call("HGET", keys[3], key)
  redis.call("HDEL", keys[3], key)
  redis.call("ZREM", keys[2], key)
  emit(keys, "delete", jstr(key), packed)
  return packed
end

-- Store a record; the oldest waiter on its key, if any, takes it at once.
local function store(keys, op, key, packed)
  redis.call("HSET", keys[3], key, packed)
  redis.call("ZADD", keys[2], 0, key)
  emit(keys, op, jstr(key), packed)
  local waiter = redis.call("LPOP", queue_of(keys, key))
  if waiter then
    local session = forget(keys, waiter)
    redis.call("RPUSH", mailbox(keys, session), "D|" .. waiter .. "|" .. take(keys, key))
  end
end

function map.set(keys, now, argv) store(keys, "set", argv[3], argv[4]) return 1 end

-- give_back: ARGV 3 key, 4 packed record: back only if the key is still absent (a
-- newer value wins), to its oldest waiter if one waits, unseen by subscribers.
function map.give_back(keys, now, argv)
  listening = false
  if redis.call("HEXISTS", keys[3], argv[3]) == 0 then store(keys, "set", argv[3], argv[4]) end
  return 1
end

function map.insert(keys, now, argv)
  if redis.call("HEXISTS", keys[3], argv[3]) == 1 then
    return fail("AlreadyExists", "insert on '" .. name(keys) .. "': key '" .. argv[3] ..
                "' is present")
  end
  store(keys, "insert", argv[3], argv[4])
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
