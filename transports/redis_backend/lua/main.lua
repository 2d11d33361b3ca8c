local kinds = {volatile_list = list, volatile_map = map, queue = queue, feed = feed,
               sorted_feed = sorted, job = jobs}

-- subscribe: ARGV 3 session. The stream's last id and event number, then what a
-- subscription is sent first, as (key, packed) pairs in order: a list's records by
-- position, a map's by key, a feed's or sorted feed's items, a queue's by priority, a
-- job queue's unended jobs in put order (the caller keeps those from its start on).
function shared.subscribe(keys, now, argv)
  redis.call("HINCRBY", base(keys) .. ":subs", argv[3], 1)
  redis.call("HINCRBY", keys[1], "subs", 1)
  listening = true
  local last = redis.call("XREVRANGE", base(keys) .. ":ev", "+", "-", "COUNT", 1)[1]
  local out = {last and last[1] or "0-0", redis.call("HGET", keys[1], "events") or "0"}
  local kind, all = redis.call("HGET", keys[1], "kind"), {nil, nil, "0", ""}
  local pairs_ = {}
  if kind == "volatile_list" then pairs_ = list.query(keys, now, all)
  elseif kind == "volatile_map" then pairs_ = map.query(keys, now, all)
  elseif kind == "feed" then pairs_ = feed.items(keys, now, all)
  elseif kind == "sorted_feed" then pairs_ = sorted.items(keys, now, all)
  elseif kind == "queue" then
    local ranked = redis.call("ZRANGE", keys[2], 0, -1, "WITHSCORES")
    for i = 1, #ranked, 2 do
      pairs_[#pairs_ + 1] = string.format("%d", -tonumber(ranked[i + 1]))
      pairs_[#pairs_ + 1] = redis.call("HGET", keys[3], ranked[i])
    end
  else
    for _, id in ipairs(jobs.ids(keys, now, {nil, nil, ""})) do
      pairs_[#pairs_ + 1] = id
      pairs_[#pairs_ + 1] = redis.call("HGET", base(keys) .. ":job:" .. id, "item")
    end
  end
  for _, x in ipairs(pairs_) do out[#out + 1] = x end
  return out
end

-- unsubscribe: ARGV 3 session: one subscription of its fewer.
function shared.unsubscribe(keys, now, argv)
  local subs = base(keys) .. ":subs"
  if redis.call("HINCRBY", subs, argv[3], -1) <= 0 then redis.call("HDEL", subs, argv[3]) end
  listening = redis.call("HINCRBY", keys[1], "subs", -1) > 0
  return 1
end

-- delete_container: its waiters are told NotFound (in their mailboxes, which stay
-- for their readers), its subscribers read a last event that ends them, and every
-- other key of it goes (its event stream a minute later, once they have read it).
function shared.delete_container(keys, now, argv)
  local b, gone = base(keys), "container '" .. name(keys) .. "' was deleted"
  local info = redis.call("HGETALL", keys[5])
  for i = 1, #info, 2 do
    local session = withdraw(keys, info[i])
    redis.call("RPUSH", mailbox(keys, session), "C|" .. info[i] .. "|NotFound|" .. gone)
  end
  if listening then
    local n = redis.call("HINCRBY", keys[1], "events", 1)
    redis.call("XADD", b .. ":ev", "*", "n", n, "e", "", "k", "null", "v", jstr(gone))
  end
  redis.call("PEXPIRE", b .. ":ev", 60000)
  local doomed = {b .. ":ready", b .. ":sp", b .. ":wpi", b .. ":wp", b .. ":live", b .. ":subs",
                  b .. ":lapsed"}
  if redis.call("HGET", keys[1], "kind") == "job" then
    for _, id in ipairs(redis.call("ZRANGE", keys[2], 0, -1)) do
      local owner = redis.call("HGET", b .. ":job:" .. id, "owner")
      if owner then doomed[#doomed + 1] = b .. ":sc:" .. owner end
      doomed[#doomed + 1] = b .. ":job:" .. id
    end
  end
  for i = 1, 6 do doomed[#doomed + 1] = keys[i] end
  for i = 1, #doomed, 100 do
    redis.call("DEL", unpack(doomed, i, math.min(i + 99, #doomed)))
  end
  return 1
end

local function call(declared, argv)
  local meta_key = declared[1]
  local b = string.sub(meta_key, 1, -6)
  local keys = {meta_key, b .. ":o", b .. ":v", b .. ":w", b .. ":wi", b .. ":tm"}
  local op = shared[argv[1]]
  local read = redis.call("HMGET", keys[1], "kind", "now", "due", "subs", "lease",
                          "result_ttl")
  local kind = read[1]
  meta.lease, meta.result_ttl = read[5], read[6]
  if argv[1] ~= "create" then
    if not kind then return fail("NotFound", argv[1] .. ": no container") end
    op = op or kinds[kind][argv[1]]
    if op == nil then
      return fail("WrongKind", argv[1] .. " on '" .. name(keys) .. "': a " .. kind ..
                  " has no " .. argv[1])
    end
  end
  listening = (tonumber(read[4]) or 0) > 0
  due = read[3] and (read[3] == "inf" and math.huge or tonumber(read[3])) or -math.huge
  local stamp
  stamp, liveness = string.match(argv[2], "^([^|]*)|?(.*)$")
  local now = clock(keys, stamp, read[2])
  advance(keys, now)
  local answer = op(keys, now, argv)
  if argv[1] == "statistics" then  -- every kind's counts, then its subscriptions
    answer[#answer + 1] = tonumber(redis.call("HGET", keys[1], "subs") or "0")
  end
  return answer
end

redis.register_function("corral", call)
