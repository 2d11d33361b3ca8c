-- Lists: records by position (the order LIST of record ids); waiters pop the front.

function list.push_back(keys, now, argv)
  local n = redis.call("RPUSH", keys[2], new_record(keys, argv[3]))
  emit(keys, "push_back", jint(n - 1), argv[3])
  feed(keys)
  return 1
end

function list.push_front(keys, now, argv)
  redis.call("LPUSH", keys[2], new_record(keys, argv[3]))
  emit(keys, "push_front", "0", argv[3])
  feed(keys)
  return 1
end

-- give_back: ARGV 3 a packed record, back to the front (or to the oldest waiter),
-- unseen by subscribers: they saw it leave once, and it leaves once.
function list.give_back(keys, now, argv)
  listening = false
  return list.push_front(keys, now, argv)
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
  emit(keys, "set", jint(i), argv[4])
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
  emit(keys, "insert", jint(i), argv[4])
  feed(keys)
  return 1
end

function list.delete(keys, now, argv)
  local i, err = index(keys, "delete", argv[3], false)
  if err then return err end
  local id = redis.call("LINDEX", keys[2], i)
  emit(keys, "delete", jint(i), redis.call("HGET", keys[3], id))
  redis.call("LREM", keys[2], 1, id)
  redis.call("HDEL", keys[3], id)
  return 1
end

function list.count(keys, now, argv) return count(keys) end

function list.query(keys, now, argv) return records(keys, argv, count(keys), "LRANGE", true) end

function list.clear(keys, now, argv)
  redis.call("DEL", keys[2], keys[3])
  emit(keys, "clear", "null")
  return 1
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

function list.statistics(keys, now, argv)
  return {count(keys), redis.call("LLEN", keys[4])}
end

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
