-- Who is in which room, over every server: each server says how many of its
-- sockets are in each of its rooms, and reads the totals back.
--
-- KEYS     one hash per room                  workshop:presence:rust
-- ARGV     this server's id, how long (ms) its counts stand unless it says
--          them again, then its count in each room of KEYS, in order
--
-- A room's hash holds "count deadline" per server. A server says its counts
-- every two seconds; one that stops (it crashed, or lost Redis) is counted
-- out at its deadline, and a room nobody counts any more expires whole.
-- Answers the total of each room of KEYS.

local time = redis.call('TIME')
local now = tonumber(time[1]) * 1000 + math.floor(tonumber(time[2]) / 1000)
local server, lasts = ARGV[1], tonumber(ARGV[2])
local totals = {}
for i, key in ipairs(KEYS) do
  local count = tonumber(ARGV[i + 2])
  if count > 0 then
    redis.call('HSET', key, server, string.format('%d %.0f', count, now + lasts))
    redis.call('PEXPIRE', key, lasts)
  else
    redis.call('HDEL', key, server)
  end
  local total = 0
  local servers = redis.call('HGETALL', key)
  for j = 1, #servers, 2 do
    local members, deadline = string.match(servers[j + 1], '^(%d+) (%d+)$')
    if members and tonumber(deadline) > now then
      total = total + tonumber(members)
    else
      redis.call('HDEL', key, servers[j])
    end
  end
  totals[i] = total
end
return totals
