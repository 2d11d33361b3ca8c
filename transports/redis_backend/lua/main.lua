local kinds = {volatile_list = list, volatile_map = map, queue = queue, feed = feed,
               sorted_feed = sorted, job = jobs}

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
