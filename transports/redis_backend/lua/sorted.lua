-- Sorted feeds: items by int id (counting up) in an order set by hand: a doubly linked
-- list in two HASHes, next (the order key) and prev (<base>:sp), with 0 the sentinel at
-- both ends, so that every insert, move and removal is O(1), as in the kernel.

local sorted = {}

local function prev_of(keys) return base(keys) .. ":sp" end

local function link_after(keys, rel, id)
  local after = redis.call("HGET", keys[2], rel) or "0"
  redis.call("HSET", keys[2], rel, id)
  redis.call("HSET", keys[2], id, after)
  redis.call("HSET", prev_of(keys), id, rel)
  redis.call("HSET", prev_of(keys), after, id)
end

local function link_before(keys, rel, id)
  link_after(keys, redis.call("HGET", prev_of(keys), rel) or "0", id)
end

local function unlink(keys, id)
  local before = redis.call("HGET", prev_of(keys), id)
  local after = redis.call("HGET", keys[2], id)
  redis.call("HDEL", keys[2], id)
  redis.call("HDEL", prev_of(keys), id)
  redis.call("HSET", keys[2], before, after)
  redis.call("HSET", prev_of(keys), after, before)
end

local function known(keys, op, id)
  if redis.call("HEXISTS", keys[3], id) == 0 then
    return fail("NotFound", op .. " on '" .. name(keys) .. "': no item " .. id)
  end
end

-- A new item, placed by ARGV 3 ("append", "prepend", "before", "after"), 4 the
-- relative id ("" for none), 5 the packed item.
local function place_new(keys, argv)
  local place, rel = argv[3], argv[4]
  if rel ~= "" then
    local err = known(keys, "insert_" .. place, rel)
    if err then return err end
  end
  local id = tostring(redis.call("HINCRBY", keys[1], "last_id", 1))
  redis.call("HSET", keys[3], id, argv[5])
  local position
  if place == "append" then link_before(keys, "0", id); position = ":end"
  elseif place == "prepend" then link_after(keys, "0", id); position = "begin:"
  elseif place == "before" then link_before(keys, rel, id); position = ":" .. rel
  else link_after(keys, rel, id); position = rel .. ":" end
  emit(keys, "publish", id, argv[5])
  emit(keys, "position", id, "[" .. jstr(position) .. ",null]")
  return tonumber(id)
end

function sorted.publish_at(keys, now, argv) return place_new(keys, argv) end

function sorted.edit(keys, now, argv)
  local err = known(keys, "edit", argv[3])
  if err then return err end
  redis.call("HSET", keys[3], argv[3], argv[4])
  emit(keys, "edit", argv[3], argv[4])
  return 1
end

-- move: ARGV 3 the op (move_before, move_after, move_first, move_last), 4 the id,
-- 5 the relative id ("" for none).
function sorted.move(keys, now, argv)
  local op, id, rel = argv[3], argv[4], argv[5]
  local err = known(keys, op, id)
  if err then return err end
  if rel ~= "" then
    err = known(keys, op, rel)
    if err then return err end
    if rel == id then
      return fail("InvalidArgument", op .. " on '" .. name(keys) .. "': item " .. id ..
                  " cannot move relative to itself")
    end
  end
  unlink(keys, id)
  local position
  if op == "move_before" then link_before(keys, rel, id); position = ":" .. rel
  elseif op == "move_after" then link_after(keys, rel, id); position = rel .. ":"
  elseif op == "move_first" then link_after(keys, "0", id); position = "begin:"
  else link_before(keys, "0", id); position = ":end" end
  emit(keys, "position", id, "[" .. jstr(position) .. ",null]")
  return 1
end

function sorted.retract(keys, now, argv)
  local err = known(keys, "retract", argv[3])
  if err then return err end
  unlink(keys, argv[3])
  emit(keys, "retract", argv[3], redis.call("HGET", keys[3], argv[3]))
  redis.call("HDEL", keys[3], argv[3])
  return 1
end

function sorted.get(keys, now, argv)
  local err = known(keys, "get", argv[4])
  if err then return err end
  return {argv[4], redis.call("HGET", keys[3], argv[4])}
end

-- id, packed, id, packed... in order.
function sorted.items(keys, now, argv)
  local out, id = {}, redis.call("HGET", keys[2], "0") or "0"
  while id ~= "0" do
    out[#out + 1] = id
    out[#out + 1] = redis.call("HGET", keys[3], id)
    id = redis.call("HGET", keys[2], id)
  end
  return out
end

function sorted.count(keys, now, argv) return redis.call("HLEN", keys[3]) end

function sorted.statistics(keys, now, argv) return {redis.call("HLEN", keys[3]), 0} end

function sorted.check(keys, now, argv)
  local next_links = redis.call("HGETALL", keys[2])
  for i = 1, #next_links, 2 do
    if redis.call("HGET", prev_of(keys), next_links[i + 1]) ~= next_links[i] then
      return fail("AssertionError", "order links disagree")
    end
  end
  local walked = #sorted.items(keys, now, argv) / 2
  if walked ~= redis.call("HLEN", keys[3]) then
    return fail("AssertionError", "order and items differ")
  end
  return 1
end
