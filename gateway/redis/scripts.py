"""The Lua scripts: writes that touch several keys (an entry, the index, the orders of
eviction, the sizes and tenant counts, the change stream) run as one atomic step. Every
script removes through the same `remove` and announces what it removed on the change
stream, which every replica follows."""

from __future__ import annotations

from string import Template

from gateway.redis.link import (
    BYTES,
    CHANGES,
    CHANGES_MAX,
    ENTRY,
    FREQ,
    INDEX,
    OWNERS,
    SIZES,
    TENANT,
    TENANTS,
    USED,
)

EVICT_STEP = 1000  # evictions per put at the most (the rest on later puts)

_NAMES = {
    "ENTRY": ENTRY,
    "INDEX": INDEX,
    "USED": USED,
    "FREQ": FREQ,
    "SIZES": SIZES,
    "BYTES": BYTES,
    "OWNERS": OWNERS,
    "TENANTS": TENANTS,
    "TENANT": TENANT,
    "CHANGES": CHANGES,
    "CHANGES_MAX": CHANGES_MAX,
}
_REMOVE = """
-- lfu order: hits, then the least recently used (ms, as a fraction under one hit)
local function lfu_score(hits, now)
  return string.format('%.17g', hits + now * 1e-13)
end
local function remove(key)
  redis.call('DEL', '$ENTRY' .. key)
  local size = redis.call('HGET', '$SIZES', key)
  if size then
    redis.call('HDEL', '$SIZES', key)
    redis.call('DECRBY', '$BYTES', size)
  end
  local tenant = redis.call('HGET', '$OWNERS', key)
  if tenant then
    redis.call('HDEL', '$OWNERS', key)
    if redis.call('HINCRBY', '$TENANTS', tenant, -1) <= 0 then
      redis.call('HDEL', '$TENANTS', tenant)
    end
    for _, order in ipairs({'ttl', 'lru', 'lfu'}) do
      redis.call('ZREM', '$TENANT' .. tenant .. ':' .. order, key)
    end
  end
  redis.call('ZREM', '$USED', key)
  redis.call('ZREM', '$FREQ', key)
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
# ARGV: key, deadline ms, size, max entries, max bytes, writer, context key, tenant, tenant
# quota (0: none), eviction (ttl|lru|lfu), now ms, hits, then the fields.
# Makes room first, evicting exactly what the bounds need (never the entry it stores);
# returns {evicted keys, their reasons}.
PUT_LUA = Template(
    _REMOVE
    + """
local key, deadline, size, tenant = ARGV[1], ARGV[2], tonumber(ARGV[3]), ARGV[8]
local quota, eviction, now = tonumber(ARGV[9]), ARGV[10], tonumber(ARGV[11])
local score = lfu_score(tonumber(ARGV[12]), now)
local own = '$TENANT' .. tenant .. ':'
local orders = {ttl = '$INDEX', lru = '$USED', lfu = '$FREQ'}
remove(key)  -- a replacement: its old copy makes no room for others
local evicted, reasons = {}, {}
local function first(set)
  return redis.call('ZRANGE', set, 0, 0)[1]
end
local function evict(victim, reason)
  if not victim or #evicted >= $EVICT_STEP then return false end
  remove(victim)
  table.insert(evicted, victim)
  table.insert(reasons, reason)
  return true
end
-- Entries stored before the orders by use were kept are in the index only: by expiry.
local function victim()
  return first(orders[eviction]) or first('$INDEX')
end
if quota > 0 then
  while tonumber(redis.call('HGET', '$TENANTS', tenant) or '0') >= quota
        and evict(first(own .. eviction), 'tenant_quota') do end
end
while redis.call('ZCARD', '$INDEX') >= tonumber(ARGV[4])
      and evict(victim(), 'max_entries') do end
while tonumber(redis.call('GET', '$BYTES') or '0') + size > tonumber(ARGV[5])
      and evict(victim(), 'max_store_bytes') do end
redis.call('HSET', '$ENTRY' .. key, unpack(ARGV, 13))
redis.call('PEXPIREAT', '$ENTRY' .. key, deadline)
redis.call('ZADD', '$INDEX', deadline, key)
redis.call('ZADD', '$USED', now, key)
redis.call('ZADD', '$FREQ', score, key)
redis.call('HSET', '$SIZES', key, size)
redis.call('INCRBY', '$BYTES', size)
redis.call('HSET', '$OWNERS', key, tenant)
redis.call('HINCRBY', '$TENANTS', tenant, 1)
redis.call('ZADD', own .. 'ttl', deadline, key)
redis.call('ZADD', own .. 'lru', now, key)
redis.call('ZADD', own .. 'lfu', score, key)
redis.call('XADD', '$CHANGES', 'MAXLEN', '~', $CHANGES_MAX, '*',
           'op', 'add', 'key', key, 'src', ARGV[6], 'ctx', ARGV[7])
announce(evicted)
return {evicted, reasons}
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
# ARGV: key, count, now (ms). Never creates a hash for an entry that is gone; moves the
# entry in the orders by use (XX: an entry stored before they were kept stays out).
HIT_LUA = Template(
    _REMOVE
    + """
local key, now = ARGV[1], tonumber(ARGV[3])
if redis.call('EXISTS', '$ENTRY' .. key) == 1 then
  local score = lfu_score(redis.call('HINCRBY', '$ENTRY' .. key, 'hits', ARGV[2]), now)
  redis.call('ZADD', '$USED', 'XX', now, key)
  redis.call('ZADD', '$FREQ', 'XX', score, key)
  local tenant = redis.call('HGET', '$OWNERS', key)
  if tenant then
    redis.call('ZADD', '$TENANT' .. tenant .. ':lru', 'XX', now, key)
    redis.call('ZADD', '$TENANT' .. tenant .. ':lfu', 'XX', score, key)
  end
end
"""
).substitute(_NAMES)
