"""The Lua scripts: writes that touch several keys (an entry, the index, the sizes, the change
stream) run as one atomic step. Every script removes through the same `remove` and announces
what it removed on the change stream, which every replica follows."""

from __future__ import annotations

from string import Template

from gateway.redis.link import BYTES, CHANGES, CHANGES_MAX, ENTRY, INDEX, SIZES

EVICT_STEP = 1000  # evictions per put at the most (the rest on later puts)

_NAMES = {
    "ENTRY": ENTRY,
    "INDEX": INDEX,
    "SIZES": SIZES,
    "BYTES": BYTES,
    "CHANGES": CHANGES,
    "CHANGES_MAX": CHANGES_MAX,
}
_REMOVE = """
local function remove(key)
  redis.call('DEL', '$ENTRY' .. key)
  local size = redis.call('HGET', '$SIZES', key)
  if size then
    redis.call('HDEL', '$SIZES', key)
    redis.call('DECRBY', '$BYTES', size)
  end
  return redis.call('ZREM', '$INDEX', key) == 1
end
local function announce(removed)
  if #removed > 0 then
    redis.call('XADD', '$CHANGES', 'MAXLEN', '~', $CHANGES_MAX, '*',
               'op', 'remove', 'keys', table.concat(removed, ' '))
  end
  return removed
end
"""
# ARGV: key, deadline ms, size, max entries, max bytes, writer, context key, then fields.
PUT_LUA = Template(
    _REMOVE
    + """
local key, deadline, size = ARGV[1], ARGV[2], tonumber(ARGV[3])
local old = tonumber(redis.call('HGET', '$SIZES', key) or '0')
redis.call('DEL', '$ENTRY' .. key)
redis.call('HSET', '$ENTRY' .. key, unpack(ARGV, 8))
redis.call('PEXPIREAT', '$ENTRY' .. key, deadline)
redis.call('ZADD', '$INDEX', deadline, key)
redis.call('HSET', '$SIZES', key, size)
redis.call('INCRBY', '$BYTES', size - old)
redis.call('XADD', '$CHANGES', 'MAXLEN', '~', $CHANGES_MAX, '*',
           'op', 'add', 'key', key, 'src', ARGV[6], 'ctx', ARGV[7])
local evicted = {}
while #evicted < $EVICT_STEP and (redis.call('ZCARD', '$INDEX') > tonumber(ARGV[4])
       or tonumber(redis.call('GET', '$BYTES') or '0') > tonumber(ARGV[5])) do
  local victim = redis.call('ZRANGE', '$INDEX', 0, 0)[1]
  if not victim then break end
  remove(victim)
  table.insert(evicted, victim)
end
return announce(evicted)
"""
).substitute(_NAMES, EVICT_STEP=EVICT_STEP)
# ARGV: the keys to remove.
REMOVE_LUA = Template(
    _REMOVE
    + """
local removed = {}
for _, key in ipairs(ARGV) do
  if remove(key) then table.insert(removed, key) end
end
return announce(removed)
"""
).substitute(_NAMES)
# ARGV: now (ms), how many at the most.
SWEEP_LUA = Template(
    _REMOVE
    + """
local removed = {}
for _, key in ipairs(redis.call('ZRANGEBYSCORE', '$INDEX', '-inf', ARGV[1], 'LIMIT', 0, ARGV[2])) do
  if remove(key) then table.insert(removed, key) end
end
return announce(removed)
"""
).substitute(_NAMES)
# ARGV: key, count. Never creates a hash for an entry that is gone.
HIT_LUA = Template(
    """
if redis.call('EXISTS', '$ENTRY' .. ARGV[1]) == 1 then
  redis.call('HINCRBY', '$ENTRY' .. ARGV[1], 'hits', ARGV[2])
end
"""
).substitute(_NAMES)
