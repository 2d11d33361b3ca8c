-- Feeds: items by string id in publish order (the order ZSET, scored by a publish
-- counter, so an edit moves its item last); fresh ids count up, skipping given ones.

local feed = {}

local function feed_remove(keys, id)
  emit(keys, "retract", jstr(id), redis.call("HGET", keys[3], id))
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
  local edit = redis.call("HSET", keys[3], id, argv[3]) == 0
  redis.call("ZADD", keys[2], next_seq(keys), id)
  emit(keys, edit and "edit" or "publish", jstr(id), argv[3])
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
