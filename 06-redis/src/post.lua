-- Stores one post in a room, whole or not at all: Redis runs a script from
-- start to end with no other command in between, so two servers posting to
-- the same room at the same instant still get ids one after the other.
--
-- KEYS[1]  the room's stream                 workshop:room:rust
-- KEYS[2]  the room's attachments, by id     workshop:files:rust
-- KEYS[3]  every room that has news          workshop:rooms
-- KEYS[4]  the bytes of every attachment     workshop:files
-- KEYS[5]  for a post with a key, its answer workshop:posted:rust:KEY
-- ARGV     room name, history, max rooms, title, body,
--          and for an attachment: type, bytes, per-room limit, overall limit
--
-- Answers {"posted", id, posted_at}, {"again", id, posted_at} for a key
-- already stored, or {"refused", "rooms"}.
--
-- Past its limits Redis makes way rather than refusing: a new room takes
-- the place of the quietest room nobody is in, and a new attachment that
-- would overflow the overall limit pushes out the oldest of any room. The
-- other rooms' keys are named from the prefix of KEYS[3] (one Redis, not a
-- cluster), and every attachment is listed, oldest first, in the sorted
-- set PREFIX:files-order ("ROOM ID", scored by when it came).

local room, history, max_rooms = ARGV[1], tonumber(ARGV[2]), tonumber(ARGV[3])
local mime, bytes = ARGV[6], ARGV[7]
local prefix = string.sub(KEYS[3], 1, -#':rooms' - 1)
local order = prefix .. ':files-order'
local function key(kind, name)
  return prefix .. ':' .. kind .. ':' .. name
end

-- A post sent again with its key (its answer was lost, or said that the
-- outcome is unknown) is not stored again: it gets the first answer.
if KEYS[5] then
  local first = redis.call('GET', KEYS[5])
  if first then
    return {'again', string.match(first, '^(%d+) (%d+)$')}
  end
end

-- An attachment leaves Redis: its bytes no longer count.
local function forget_in(name, id)
  local files = key('files', name)
  local size = redis.call('HSTRLEN', files, id)
  if size > 0 then
    redis.call('HDEL', files, id)
    redis.call('DECRBY', KEYS[4], size)
  end
  redis.call('ZREM', order, name .. ' ' .. id)
  return size
end
local function forget(id)
  return forget_in(room, id)
end

-- When a room's newest item was posted (0 for a room without news).
local function last_post(name)
  local newest = redis.call('XREVRANGE', key('room', name), '+', '-', 'COUNT', 1)[1]
  if not newest then return 0 end
  for i = 1, #newest[2], 2 do
    if newest[2][i] == 'at' then return tonumber(newest[2][i + 1]) end
  end
  return 0
end

-- Makes way for a new room: forgets the room nobody is in (on any server:
-- its presence hash has expired) whose news is oldest, with its history
-- and attachments. False when someone is in every room.
local function reclaim()
  local quietest, oldest = nil, nil
  for _, other in ipairs(redis.call('SMEMBERS', KEYS[3])) do
    if other ~= 'general' and redis.call('EXISTS', key('presence', other)) == 0 then
      local at = last_post(other)
      if not oldest or at < oldest then quietest, oldest = other, at end
    end
  end
  if not quietest then return false end
  for _, id in ipairs(redis.call('HKEYS', key('files', quietest))) do
    forget_in(quietest, id)
  end
  redis.call('DEL', key('room', quietest), key('files', quietest))
  redis.call('SREM', KEYS[3], quietest)
  return true
end

-- Every check first: a refused post changes nothing.
if redis.call('SISMEMBER', KEYS[3], room) == 0
    and redis.call('SCARD', KEYS[3]) >= max_rooms
    and not reclaim() then
  return {'refused', 'rooms'}
end
redis.call('SADD', KEYS[3], room)

-- The Redis server's clock, in microseconds: every server agrees on it.
local time = redis.call('TIME')
local now = time[1] .. string.format('%06d', tonumber(time[2]))

-- The id: one more than the room's last, or for a new room one more than
-- the clock (so that ids never repeat, even after Redis lost everything: a
-- cursor from before is then older than anything the room has, and gets a
-- reset). Entry ids are "ID-0": plain numbers for the page's script, and
-- cursors that XRANGE and XREAD understand as they are.
local last = redis.call('XREVRANGE', KEYS[1], '+', '-', 'COUNT', 1)[1]
local before = now
if last then
  before = string.match(last[1], '^%d+')
end
local id = string.format('%.0f', tonumber(before) + 1)

-- MAXLEN keeps the newest `history` entries; the ones it is about to drop
-- take their attachments with them.
local dropping = redis.call('XLEN', KEYS[1]) - history + 1
if dropping > 0 then
  for _, entry in ipairs(redis.call('XRANGE', KEYS[1], '-', '+', 'COUNT', dropping)) do
    forget(string.match(entry[1], '^%d+'))
  end
end

if bytes then
  -- Past the overall limit, the oldest attachments of any room go first.
  while tonumber(redis.call('GET', KEYS[4]) or '0') + #bytes > tonumber(ARGV[9]) do
    local oldest = redis.call('ZRANGE', order, 0, 0)[1]
    if not oldest then break end
    local name, other = string.match(oldest, '^(.*) (%d+)$')
    forget_in(name, other)
  end
  redis.call('XADD', KEYS[1], 'MAXLEN', history, id .. '-0',
    'title', ARGV[4], 'body', ARGV[5], 'at', now, 'mime', mime, 'size', #bytes)
  redis.call('HSET', KEYS[2], id, bytes)
  redis.call('ZADD', order, now, room .. ' ' .. id)
  redis.call('INCRBY', KEYS[4], #bytes)
  -- A room keeps its newest attachments, up to its limit: the oldest go.
  local ids = redis.call('HKEYS', KEYS[2])
  table.sort(ids, function(a, b) return tonumber(a) < tonumber(b) end)
  local kept = 0
  for _, other in ipairs(ids) do
    kept = kept + redis.call('HSTRLEN', KEYS[2], other)
  end
  for _, oldest in ipairs(ids) do
    if kept <= tonumber(ARGV[8]) then break end
    kept = kept - forget(oldest)
  end
else
  redis.call('XADD', KEYS[1], 'MAXLEN', history, id .. '-0',
    'title', ARGV[4], 'body', ARGV[5], 'at', now)
end
-- The key is remembered with the post, in the same script: no retry can
-- come between them. For five minutes, longer than any client retries;
-- `NX`, so that a first answer is never replaced.
if KEYS[5] then
  redis.call('SET', KEYS[5], id .. ' ' .. now, 'NX', 'EX', 300)
end
return {'posted', id, now}
