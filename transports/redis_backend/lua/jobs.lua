-- Job queues, as kernel/_jobs.py: jobs claimed under a lease, finished exactly once.
-- Keys (all under the container's tag): one HASH per job at <base>:job:<id> (item,
-- priority, state, attempt, arrival, owner, reason, result, created, claimed, ended,
-- timer, deadline); the ids in the order they were put (KEYS[2], a ZSET by put seq);
-- ready jobs in <base>:ready (ZSET score -priority, member "<arrival:016x>:<id>", so
-- ties keep arrival order); claimers FIFO in KEYS[4], their lease as their payload;
-- a job's result readers at <base>:wr:<id>; each session's claims at <base>:sc:<session>
-- (ZSET by grant order); one timer per job (its delay, lease or result TTL) in KEYS[6]
-- as "<seq:016x>:job:<id>"; per-state counts in meta as "n:<state>".
-- Mailbox messages: "J|<waiter>|<attempt>|<packed item>\n<id>" (a claim served) and
-- "R|<waiter>|<packed result>" (a result read).

local jobs = {}

local function num(x) return string.format("%.17g", x) end
local function seconds(text) if text == "inf" then return math.huge end return tonumber(text) end
local function job_key(keys, id) return base(keys) .. ":job:" .. id end
local function ready_key(keys) return base(keys) .. ":ready" end
local function claims_key(keys, session) return base(keys) .. ":sc:" .. session end
local function option(keys, what) return seconds(redis.call("HGET", keys[1], what)) end
local function ready_member(arrival, id) return string.format("%016x", arrival) .. ":" .. id end

-- splitmix64, as the kernel's Core.random, in 16-bit limbs (Lua's numbers are doubles):
-- the jitter of a retry's backoff replays as the kernel's. The state is per container.
local function limbs(x) -- a number < 2^53 (the seed) as 4 limbs, least significant first
  local out = {}
  for i = 1, 4 do out[i] = x % 65536; x = math.floor(x / 65536) end
  return out
end

local function add64(a, b)
  local out, carry = {}, 0
  for i = 1, 4 do
    local s = a[i] + b[i] + carry
    out[i], carry = s % 65536, math.floor(s / 65536)
  end
  return out
end

local function mul64(a, b)
  local acc = {0, 0, 0, 0}
  for i = 1, 4 do
    for j = 1, 5 - i do acc[i + j - 1] = acc[i + j - 1] + a[i] * b[j] end
  end
  local carry = 0
  for i = 1, 4 do
    local s = acc[i] + carry
    acc[i], carry = s % 65536, math.floor(s / 65536)
  end
  return acc
end

local function shr64(a, n)
  local q, r, out = math.floor(n / 16), n % 16, {}
  for i = 1, 4 do
    local lo, hi = a[i + q] or 0, a[i + q + 1] or 0
    out[i] = (math.floor(lo / 2 ^ r) + (hi * 2 ^ (16 - r)) % 65536) % 65536
  end
  return out
end

local function xor64(a, b)
  local out = {}
  for i = 1, 4 do out[i] = bit.bxor(a[i], b[i]) end
  return out
end

local GOLDEN = {0x7C15, 0x7F4A, 0x79B9, 0x9E37}
local MIX1 = {0xE5B9, 0x1CE4, 0x476D, 0xBF58}
local MIX2 = {0x11EB, 0x1331, 0x49BB, 0x94D0}

local function random(keys)
  local stored = redis.call("HGET", keys[1], "rng")
  local state = {2605, 0, 0, 0}
  if stored then state = cjson.decode(stored) end
  state = add64(state, GOLDEN)
  redis.call("HSET", keys[1], "rng", cjson.encode(state))
  local z = mul64(xor64(state, shr64(state, 30)), MIX1)
  z = mul64(xor64(z, shr64(z, 27)), MIX2)
  z = shr64(xor64(z, shr64(z, 31)), 11)
  return (z[1] + z[2] * 65536 + z[3] * 2 ^ 32 + z[4] * 2 ^ 48) / 2 ^ 53
end

-- -- a job's record -------------------------------------------------------------------

-- The per-state counts: a job leaves ``old`` (nil: it is new) for ``new`` (nil: it
-- is forgotten).
local function count_state(keys, old, new)
  if old then redis.call("HINCRBY", keys[1], "n:" .. old, -1) end
  if new then redis.call("HINCRBY", keys[1], "n:" .. new, 1) end
end

local function set_state(keys, jk, old, new)
  count_state(keys, old, new)
  redis.call("HSET", jk, "state", new)
end

local function disarm(keys, jk)
  local timer = redis.call("HGET", jk, "timer")
  if timer then
    redis.call("ZREM", keys[6], timer)
    redis.call("HDEL", jk, "timer", "deadline")
  end
end

local function arm(keys, jk, id, deadline)
  disarm(keys, jk)
  if deadline ~= math.huge then
    local member = string.format("%016x", next_seq(keys)) .. ":job:" .. id
    add_timer(keys, deadline, member)
    redis.call("HSET", jk, "timer", member, "deadline", num(deadline))
  end
end

local function unlease(keys, jk, id)
  local owner = redis.call("HGET", jk, "owner")
  if owner then
    redis.call("ZREM", claims_key(keys, owner), id)
    redis.call("HDEL", jk, "owner")
  end
end

local function forget_job(keys, jk, id, state)
  count_state(keys, state or redis.call("HGET", jk, "state"), nil)
  redis.call("DEL", jk)
  redis.call("ZREM", keys[2], id)
end

-- Lease a job that has no timer (it was ready) to ``session``; its attempt.
local function grant(keys, jk, id, session, lease, now, old)
  count_state(keys, old, "claimed")
  local attempt = redis.call("HINCRBY", jk, "attempt", 1)
  local seq = next_seq(keys)  -- orders its claim among the session's, and its timer
  redis.call("ZADD", claims_key(keys, session), seq, id)
  local deadline = now + lease
  if deadline ~= math.huge then
    local member = string.format("%016x", seq) .. ":job:" .. id
    add_timer(keys, deadline, member)
    redis.call("HSET", jk, "state", "claimed", "claimed", num(now), "owner", session,
               "timer", member, "deadline", num(deadline))
  else
    redis.call("HSET", jk, "state", "claimed", "claimed", num(now), "owner", session)
  end
  if listening then emit(keys, "claimed", jstr(id), redis.call("HGET", jk, "item")) end
  return attempt
end

-- Hand a ready job (not in the ready index) to the oldest claimer, if one waits.
local function serve_claimer(keys, jk, id, now)
  local claimer = redis.call("LPOP", keys[4])
  if not claimer then return false end
  local lease, owner = string.match(redis.call("HGET", payload_key(keys), claimer),
                                     "^([^|]*)|(.*)$")
  redis.call("HDEL", payload_key(keys), claimer)
  local session = forget(keys, claimer)
  local attempt = grant(keys, jk, id, owner, seconds(lease), now, "ready")
  redis.call("RPUSH", mailbox(keys, session), "J|" .. claimer .. "|" .. attempt .. "|" ..
             redis.call("HGET", jk, "item") .. "\n" .. id)
  return true
end

-- A job with no timer, leaving state ``old``, at the back of its priority; the oldest
-- claimer, if any, gets it (``idle``: the caller knows that none waits).
local function enter_ready(keys, jk, id, now, old, priority, idle)
  count_state(keys, old, "ready")
  local arrival = redis.call("HINCRBY", keys[1], "arrivals", 1)
  redis.call("HSET", jk, "state", "ready", "arrival", arrival)
  if idle or not serve_claimer(keys, jk, id, now) then
    redis.call("ZADD", ready_key(keys), -tonumber(priority), ready_member(arrival, id))
  end
end

local function make_ready(keys, jk, id, now)
  local job = redis.call("HMGET", jk, "state", "timer", "priority")
  if job[2] then
    redis.call("ZREM", keys[6], job[2])
    redis.call("HDEL", jk, "timer", "deadline")
  end
  enter_ready(keys, jk, id, now, job[1], job[3])
end

-- A failure's text as a packed value (an event's).
local function packed_reason(reason)
  return "[" .. (reason and jstr(reason) or "null") .. ",null]"
end

local function set_reason(jk, reason)
  if reason == nil then redis.call("HDEL", jk, "reason")
  else redis.call("HSET", jk, "reason", reason) end
end

local function failed_text(keys, jk, id)
  local reason = redis.call("HGET", jk, "reason")
  if reason and reason ~= "" then return reason end
  return "job " .. id .. " on '" .. name(keys) .. "' stalled"
end

-- The dead-letter state: the job stays; whoever waits for its result hears why.
local function stall(keys, jk, id, reason)
  set_state(keys, jk, redis.call("HGET", jk, "state"), "stalled")
  set_reason(jk, reason)
  emit(keys, "stalled", jstr(id), packed_reason(reason))
  local readers = base(keys) .. ":wr:" .. id
  local text = failed_text(keys, jk, id)
  while true do
    local reader = redis.call("LPOP", readers)
    if not reader then break end
    redis.call("RPUSH", mailbox(keys, forget(keys, reader)), "C|" .. reader ..
               "|JobFailed|" .. text)
  end
end

-- The wait before retrying a job that has failed ``failures`` times.
local function backoff(keys, failures)
  local first = option(keys, "backoff")
  if first <= 0 then return 0 end
  local delay = math.min(option(keys, "backoff_max"),
                         first * option(keys, "backoff_factor") ^ math.min(failures - 1, 64))
  return delay * (1 - random(keys) / 2)
end

-- A claim ended without finishing: ready again after ``delay`` (nil: the backoff), or
-- stalled once max_attempts claims have failed.
local function job_fail(keys, jk, id, event, reason, delay, now)
  unlease(keys, jk, id)
  disarm(keys, jk)
  set_reason(jk, reason)
  emit(keys, event, jstr(id), packed_reason(reason))
  local attempt = tonumber(redis.call("HGET", jk, "attempt"))
  local max_attempts = tonumber(redis.call("HGET", keys[1], "max_attempts"))
  if max_attempts > 0 and attempt >= max_attempts then
    stall(keys, jk, id, reason)
    return
  end
  if delay == nil then delay = backoff(keys, attempt) end
  if delay > 0 then
    set_state(keys, jk, redis.call("HGET", jk, "state"), "delayed")
    arm(keys, jk, id, now + delay)
  else
    make_ready(keys, jk, id, now)
  end
end

-- Make a job terminal: remembered for ``ttl`` seconds (0: not at all), then forgotten;
-- its result readers hear.
local function end_job(keys, jk, id, state, result, ttl, now)
  local job = redis.call("HMGET", jk, "state", "owner", "timer", "arrival")
  local was = job[1]
  if job[2] then redis.call("ZREM", claims_key(keys, job[2]), id) end
  if was == "ready" then
    redis.call("ZREM", ready_key(keys), ready_member(job[4], id))
  end
  if ttl <= 0 then  -- forgotten at once
    if job[3] then redis.call("ZREM", keys[6], job[3]) end
    forget_job(keys, jk, id, was)
  else
    count_state(keys, was, state)
    if job[2] then redis.call("HDEL", jk, "owner") end
    if result then redis.call("HSET", jk, "state", state, "ended", num(now), "result", result)
    else redis.call("HSET", jk, "state", state, "ended", num(now)) end
    arm(keys, jk, id, now + ttl)
  end
  local readers = base(keys) .. ":wr:" .. id
  while true do
    local reader = redis.call("LPOP", readers)
    if not reader then break end
    local session = forget(keys, reader)
    if state == "finished" then
      redis.call("RPUSH", mailbox(keys, session), "R|" .. reader .. "|" .. result)
    else
      redis.call("RPUSH", mailbox(keys, session), "C|" .. reader .. "|NotFound|result on '"
                 .. name(keys) .. "': job " .. id .. " was retracted")
    end
  end
end

local function find(keys, op, id)
  local jk = job_key(keys, id)
  if redis.call("EXISTS", jk) == 0 then
    return nil, fail("NotFound", op .. " on '" .. name(keys) .. "': no job '" .. id .. "'")
  end
  return jk
end

-- The job a claim token (id, attempt) holds, or LeaseLost.
local function leased(keys, op, id, attempt)
  local jk = job_key(keys, id)
  local job = redis.call("HMGET", jk, "state", "attempt")
  local state = job[1]
  local where = op .. " on '" .. name(keys) .. "': job " .. id
  if not state then return nil, fail("LeaseLost", where .. " is gone") end
  if state ~= "claimed" then
    return nil, fail("LeaseLost", where .. " is " .. state .. ", not claimed")
  end
  local current = job[2]
  if current ~= attempt then
    return nil, fail("LeaseLost", where .. " is on attempt " .. current ..
                     ", this claim was attempt " .. attempt)
  end
  return jk
end

-- An argument the caller found wrong ("!message"), reported after the lease check as
-- the kernel does; else the value.
local function checked(text)
  if string.sub(text, 1, 1) == "!" then return nil, fail("InvalidArgument", string.sub(text, 2)) end
  return text
end

-- A failure's text: "" for none, "=" and the text.
local function reason_of(text)
  if text == "" then return nil end
  return string.sub(text, 2)
end

-- -- timers and sessions ---------------------------------------------------------------

function on_timer.job(keys, now, due)
  local id = string.match(due, "^%x+:job:(.*)$")
  local jk = job_key(keys, id)
  redis.call("HDEL", jk, "timer", "deadline")
  local state = redis.call("HGET", jk, "state")
  if state == "delayed" then make_ready(keys, jk, id, now)
  elseif state == "claimed" then
    job_fail(keys, jk, id, "expired",
             "lease expired on attempt " .. redis.call("HGET", jk, "attempt"), nil, now)
  else forget_job(keys, jk, id) end  -- terminal: its TTL ran out
end

function on_close.job(keys, now, session)
  local release = redis.call("HGET", keys[1], "release_on_close") == "1"
  for _, id in ipairs(redis.call("ZRANGE", claims_key(keys, session), 0, -1)) do
    local jk = job_key(keys, id)
    if release then job_fail(keys, jk, id, "cancelled", "the claiming session closed", 0, now)
    else unlease(keys, jk, id) end
  end
  redis.call("DEL", claims_key(keys, session))
end

-- -- commands --------------------------------------------------------------------------

-- A job with a fresh id ("": take the next) or an error (it exists), its item packed,
-- ready at once or after ``delay`` seconds (a number); its id. ``idle``: no claimer
-- waits (enter_ready).
local function put_job(keys, now, packed, priority, delay, id, idle)
  if id == "" then
    repeat
      id = tostring(redis.call("HINCRBY", keys[1], "last_id", 1))
    until redis.call("EXISTS", job_key(keys, id)) == 0
  elseif redis.call("EXISTS", job_key(keys, id)) == 1 then
    return nil, fail("AlreadyExists", "put on '" .. name(keys) .. "': job " .. id ..
                     " exists (" .. redis.call("HGET", job_key(keys, id), "state") .. ")")
  end
  local jk = job_key(keys, id)
  redis.call("HSET", jk, "item", packed, "priority", priority, "attempt", 0,
             "created", num(now))
  redis.call("ZADD", keys[2], next_seq(keys), id)
  emit(keys, "put", jstr(id), packed)
  if delay > 0 then
    set_state(keys, jk, nil, "delayed")
    arm(keys, jk, id, now + delay)
  else
    enter_ready(keys, jk, id, now, nil, priority, idle)
  end
  return id
end

-- put: ARGV 3 packed item, 4 priority, 5 delay, 6 id ("": a fresh one).
function jobs.put(keys, now, argv)
  local id, err = put_job(keys, now, argv[3], argv[4], seconds(argv[5]), argv[6])
  return err or id
end

-- put_many: ARGV 3 priority, 4 delay (both checked by the caller), 5... the packed
-- items; their fresh ids, in order. Each put as put does, but the claimers are looked
-- for only while some wait (none parks during the call).
function jobs.put_many(keys, now, argv)
  local ids, delay = {}, seconds(argv[4])
  local waiting = delay <= 0 and redis.call("LLEN", keys[4]) > 0
  for i = 5, #argv do
    ids[#ids + 1] = put_job(keys, now, argv[i], argv[3], delay, "", not waiting)
    if waiting then waiting = redis.call("LLEN", keys[4]) > 0 end
  end
  return ids
end

-- Claim for a session (ARGV 3 session, 4 timeout, 5 lease ("": the queue's), 6 the
-- session to hold the leases ("": the claiming one)) up to ``n`` ready jobs, each
-- granted in claim order: {"job", id, attempt, packed item, id, attempt, ...}; with
-- none ready, Empty for a timeout of 0, else a parked claimer (served with one job,
-- to the claiming session's mailbox).
local function claim_jobs(keys, now, argv, n)
  local session, timeout = argv[3], argv[4]
  local lease, owner = argv[5], argv[6]
  if owner == nil or owner == "" then owner = session end
  if lease == "" then lease = meta.lease end
  local popped = redis.call("ZPOPMIN", ready_key(keys), n)
  if popped[1] then
    local out, length = {"job"}, seconds(lease)
    for i = 1, #popped, 2 do
      local id = string.sub(popped[i], 18)
      local jk = job_key(keys, id)
      out[#out + 1] = id
      out[#out + 1] = grant(keys, jk, id, owner, length, now, "ready")
      out[#out + 1] = redis.call("HGET", jk, "item")
    end
    return out
  end
  if timeout ~= "" and tonumber(timeout) == 0 then
    return fail("Empty", "claim on '" .. name(keys) .. "': no job is ready")
  end
  local waiting = park(keys, now, session, timeout, "")
  redis.call("HSET", payload_key(keys), waiting[2], lease .. "|" .. owner)
  return waiting
end

-- claim: ARGV 3 session, 4 timeout, 5 lease, 6 owner (see claim_jobs); the job as
-- {"job", id, attempt, packed item}, or a parked waiter.
function jobs.claim(keys, now, argv) return claim_jobs(keys, now, argv, 1) end

-- claim_many: as claim, ARGV 7 n (>= 1, checked by the caller): up to n jobs.
function jobs.claim_many(keys, now, argv)
  return claim_jobs(keys, now, argv, tonumber(argv[7]))
end

-- Finish a job its token holds (``jk``) with ``result`` (packed), kept ``ttl`` seconds
-- ("": the queue's result TTL).
local function finish_job(keys, now, jk, id, result, ttl)
  if ttl == "" then ttl = meta.result_ttl end
  emit(keys, "finished", jstr(id), result)
  end_job(keys, jk, id, "finished", result, seconds(ttl), now)
end

-- finish: ARGV 3 id, 4 attempt, 5 packed result, 6 result TTL ("": the queue's).
function jobs.finish(keys, now, argv)
  local jk, err = leased(keys, "finish", argv[3], argv[4])
  if err then return err end
  local ttl, bad = checked(argv[6])
  if bad then return bad end
  finish_job(keys, now, jk, argv[3], argv[5], ttl)
  return 1
end

-- finish_claim: ARGV 3 to 6 as claim's, 7 id, 8 attempt, 9 packed result, 10 result
-- TTL ("": the queue's), 11 what is wrong with the others ("": nothing; else "<Class>
-- <message>"), reported after the lease check as the kernel does. Finish, then claim
-- as claim does; with a timeout of 0 and no job ready, Empty having done nothing.
function jobs.finish_claim(keys, now, argv)
  local jk, err = leased(keys, "finish", argv[7], argv[8])
  if err then return err end
  if argv[11] ~= "" then
    local class, message = string.match(argv[11], "^(%S+) (.*)$")
    return fail(class, message)
  end
  if argv[4] ~= "" and tonumber(argv[4]) == 0 and
      redis.call("ZCARD", ready_key(keys)) == 0 then
    return fail("Empty", "finish_claim on '" .. name(keys) ..
                "': no job is ready (the job is not finished)")
  end
  finish_job(keys, now, jk, argv[7], argv[9], argv[10])
  return claim_jobs(keys, now, argv, 1)
end

-- cancel: ARGV 3 id, 4 attempt, 5 delay ("": the backoff), 6 reason.
function jobs.cancel(keys, now, argv)
  local jk, err = leased(keys, "cancel", argv[3], argv[4])
  if err then return err end
  local delay, bad = checked(argv[5])
  if bad then return bad end
  job_fail(keys, jk, argv[3], "cancelled", reason_of(argv[6]),
           delay ~= "" and seconds(delay) or nil, now)
  return 1
end

-- stall: ARGV 3 id, 4 attempt, 5 reason.
function jobs.stall(keys, now, argv)
  local jk, err = leased(keys, "stall", argv[3], argv[4])
  if err then return err end
  unlease(keys, jk, argv[3])
  disarm(keys, jk)
  stall(keys, jk, argv[3], reason_of(argv[5]))
  return 1
end

-- touch: ARGV 3 id, 4 attempt, 5 lease ("": the queue's).
function jobs.touch(keys, now, argv)
  local jk, err = leased(keys, "touch", argv[3], argv[4])
  if err then return err end
  local lease, bad = checked(argv[5])
  if bad then return bad end
  if lease == "" then lease = redis.call("HGET", keys[1], "lease") end
  arm(keys, jk, argv[3], now + seconds(lease))
  return 1
end

local function retry(keys, jk, id, now)
  redis.call("HSET", jk, "attempt", 0)
  emit(keys, "retried", jstr(id), redis.call("HGET", jk, "item"))
  make_ready(keys, jk, id, now)
end

function jobs.retry(keys, now, argv)
  local jk, err = find(keys, "retry", argv[3])
  if err then return err end
  local state = redis.call("HGET", jk, "state")
  if state ~= "stalled" then
    return fail("InvalidArgument", "retry on '" .. name(keys) .. "': job " .. argv[3] ..
                " is " .. state .. ", not stalled")
  end
  retry(keys, jk, argv[3], now)
  return 1
end

function jobs.retry_all(keys, now, argv)
  local stalled = {}
  for _, id in ipairs(redis.call("ZRANGE", keys[2], 0, -1)) do
    if redis.call("HGET", job_key(keys, id), "state") == "stalled" then
      stalled[#stalled + 1] = id
    end
  end
  for _, id in ipairs(stalled) do retry(keys, job_key(keys, id), id, now) end
  return #stalled
end

function jobs.retract(keys, now, argv)
  local jk, err = find(keys, "retract", argv[3])
  if err then return err end
  local state = redis.call("HGET", jk, "state")
  if state == "finished" or state == "retracted" then
    return fail("InvalidArgument", "retract on '" .. name(keys) .. "': job " .. argv[3] ..
                " is " .. state)
  end
  emit(keys, "retracted", jstr(argv[3]), redis.call("HGET", jk, "item"))
  end_job(keys, jk, argv[3], "retracted", nil, option(keys, "result_ttl"), now)
  return 1
end

-- result: ARGV 3 session, 4 timeout, 5 id; {"done", packed result} or a parked reader.
function jobs.result(keys, now, argv)
  local jk, err = find(keys, "result", argv[5])
  if err then return err end
  local state = redis.call("HGET", jk, "state")
  if state == "finished" then return {"done", redis.call("HGET", jk, "result")} end
  if state == "retracted" then
    return fail("NotFound", "result on '" .. name(keys) .. "': job " .. argv[5] ..
                " was retracted")
  end
  if state == "stalled" then return fail("JobFailed", failed_text(keys, jk, argv[5])) end
  if argv[4] ~= "" and tonumber(argv[4]) == 0 then
    return fail("Empty", "result on '" .. name(keys) .. "': job " .. argv[5] .. " is " .. state)
  end
  return park(keys, now, argv[3], argv[4], "\2" .. argv[5])
end

-- give_back: ARGV 3 session, 4 id, 5 attempt: undo a claim, the job ready again at its
-- old place with its attempt restored (or the oldest claimer's).
function jobs.give_back(keys, now, argv)
  listening = false  -- unseen by subscribers, as the claim it undoes is seen once
  local id = argv[4]
  local jk, err = leased(keys, "give_back", id, argv[5])
  if err then return err end
  if redis.call("HGET", jk, "owner") ~= argv[3] then
    return fail("LeaseLost", "give_back on '" .. name(keys) .. "': job " .. id .. " attempt "
                .. argv[5] .. " is not held by session " .. argv[3])
  end
  unlease(keys, jk, id)
  disarm(keys, jk)
  redis.call("HINCRBY", jk, "attempt", -1)
  set_state(keys, jk, "claimed", "ready")
  if not serve_claimer(keys, jk, id, now) then
    redis.call("ZADD", ready_key(keys), -tonumber(redis.call("HGET", jk, "priority")),
               ready_member(redis.call("HGET", jk, "arrival"), id))
  end
  return 1
end

function jobs.state(keys, now, argv)
  local jk, err = find(keys, "state", argv[3])
  if err then return err end
  return redis.call("HGET", jk, "state")
end

-- info: the job's fields as a flat list of (field, value) pairs.
function jobs.info(keys, now, argv)
  local jk, err = find(keys, "info", argv[3])
  if err then return err end
  return redis.call("HGETALL", jk)
end

function jobs.get(keys, now, argv)
  local jk, err = find(keys, "get", argv[4])
  if err then return err end
  return {argv[4], redis.call("HGET", jk, "item")}
end

-- ids: ARGV 3 a state ("": every job that has not ended), in the order they were put.
function jobs.ids(keys, now, argv)
  local out = {}
  for _, id in ipairs(redis.call("ZRANGE", keys[2], 0, -1)) do
    local state = redis.call("HGET", job_key(keys, id), "state")
    if state == argv[3] or (argv[3] == "" and state ~= "finished" and state ~= "retracted") then
      out[#out + 1] = id
    end
  end
  return out
end

local STATES = {"ready", "delayed", "claimed", "stalled", "finished", "retracted"}

local function counts(keys)
  local out = {}
  for i, state in ipairs(STATES) do
    out[i] = tonumber(redis.call("HGET", keys[1], "n:" .. state) or "0")
  end
  return out
end

local function job_count(keys)
  local n = counts(keys)
  return redis.call("ZCARD", keys[2]) - n[5] - n[6]
end

function jobs.count(keys, now, argv) return job_count(keys) end

-- statistics: records, claimers, then the jobs in each state and the result readers.
function jobs.statistics(keys, now, argv)
  local out = {job_count(keys), redis.call("LLEN", keys[4])}
  for _, n in ipairs(counts(keys)) do out[#out + 1] = n end
  out[#out + 1] = redis.call("HLEN", keys[5]) - redis.call("LLEN", keys[4])
  return out
end

function jobs.check(keys, now, argv)
  if redis.call("LLEN", keys[4]) > 0 and redis.call("ZCARD", ready_key(keys)) > 0 then
    return fail("AssertionError", "claimers beside ready jobs")
  end
  local seen = {ready = 0, delayed = 0, claimed = 0, stalled = 0, finished = 0, retracted = 0}
  for _, id in ipairs(redis.call("ZRANGE", keys[2], 0, -1)) do
    local jk = job_key(keys, id)
    local state, timer = redis.call("HGET", jk, "state"), redis.call("HGET", jk, "timer")
    seen[state] = seen[state] + 1
    local owner = redis.call("HGET", jk, "owner")
    if owner and state ~= "claimed" then
      return fail("AssertionError", "job " .. id .. " is " .. state .. " with owner " .. tostring(owner))
    end
    if owner and not redis.call("ZSCORE", claims_key(keys, owner), id) then
      return fail("AssertionError", "job " .. id .. " is not in its owner's claims")
    end
    if (state == "delayed" or state == "claimed") and not timer then
      return fail("AssertionError", "job " .. id .. " has no deadline")
    end
    if (state == "ready" or state == "stalled") and timer then
      return fail("AssertionError", "job " .. id .. " has a stray timer")
    end
    if timer and not redis.call("ZSCORE", keys[6], timer) then
      return fail("AssertionError", "job " .. id .. "'s timer is not armed")
    end
    if state == "ready" and not redis.call("ZSCORE", ready_key(keys),
        ready_member(redis.call("HGET", jk, "arrival"), id)) then
      return fail("AssertionError", "ready job " .. id .. " is not in the ready index")
    end
  end
  if seen.ready ~= redis.call("ZCARD", ready_key(keys)) then
    return fail("AssertionError", "the ready index has strays")
  end
  local n = counts(keys)
  for i, state in ipairs(STATES) do
    if n[i] ~= seen[state] then
      return fail("AssertionError", "count of " .. state .. " jobs is " .. n[i] .. ", not " ..
                  seen[state])
    end
  end
  return 1
end
