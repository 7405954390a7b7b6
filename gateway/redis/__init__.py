"""The shared backend: entries, vectors and the ledger of every replica in one Redis.

Where things live (all under the prefix `cg:`; Redis 6 or later, no modules):

    cg:e:<key>    hash: one entry (backends.STORED_COLUMNS plus `size`); its Redis TTL
                  ends `max_stale` after the entry expires, when nothing may serve it any more
    cg:index      sorted set: every entry key, scored by that deadline (ms); sweeps, purges,
                  listings and the start-up load walk it
    cg:used       sorted set: every entry key by when it was last used (ms), for lru eviction
    cg:freq       sorted set: every entry key by hits, then last use, for lfu eviction
    cg:sizes      hash: key -> stored size, and cg:bytes their sum (the store's size bound)
    cg:owners     hash: key -> tenant, and cg:tenants: tenant -> its entries (tenant quota)
    cg:t:<tenant>:ttl|lru|lfu   one tenant's keys in each eviction order (tenant quota)
    cg:changes    stream of `add` (key, context_key, writer) and `remove` (keys) events;
                  every replica follows it to keep its memory LRU and FAISS index in step
    cg:ledger     stream: ledger rows (identical requests of a batch share one), every replica
    cg:refresh:<key>:<expiry ms>  a lock (until that expiry): the one replica that refreshes
                  that version of an entry ahead of its expiry (refresh_ahead)
    cg:days       hash: ledger rows past ledger_retention_days rolled up by day and group
                  (the stream trimmed through cg:days:through); cg:lock:roll-up: who rolls
    cg:epoch      a random id; a Redis that restarted empty has none (or another), and each
                  replica then drops what it holds locally and loads again
    cg:flight:<key>  a token, held (a lease, renewed) by the replica calling upstream for
                  an exact key; the others wait for the answer it stores (flights.py)

Writes that touch several keys run as Lua scripts, so a put, its size accounting, its change
event and any eviction are one atomic step. Entry writes are batched per event-loop turn
and never awaited by a request.

When Redis cannot be reached the link goes down (one log line): the cache reads nothing
(requests pass through), writes are dropped, ledger rows are buffered (bounded), and the
follower retries in the background. It brings the link up again once the local copies are
in step: after catching up on the change stream, or after a full reload when the epoch
changed or the stream no longer reaches back to the last event this replica saw.

The parts, by job: link.py (the connection, the key names, up or down), scripts.py (the
Lua that makes multi-key writes atomic), store.py (RedisStore, a backends.Store, and the
follower of the change stream), ledger.py (RedisLedger, a backends.Ledger, and its local
SQLite mirror for queries), flights.py (single-flight across replicas).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from gateway.backends import StoreLimits
from gateway.redis.ledger import RedisLedger
from gateway.redis.link import RedisLink
from gateway.redis.store import RedisStore

if TYPE_CHECKING:
    from gateway.config import Config


def open_redis(config: Config) -> tuple[RedisStore, RedisLedger]:
    """The store and the ledger of `config.backend` (redis://HOST:PORT/DB), on one link."""
    link = RedisLink(config.backend)
    store = RedisStore(link, StoreLimits.of(config), config.max_stale)
    return store, RedisLedger(link)
