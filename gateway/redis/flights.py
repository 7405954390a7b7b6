"""Single-flight across replicas: of the replicas asked for one exact key at once, the one
that claims `cg:flight:<key>` calls upstream; the others wait for the answer it stores
(Gateway.lead_across_replicas). The claim is a lease its holder renews while it works, so a
replica that dies holding one is waited for at most FLIGHT_LEASE_MS. Without Redis every
replica leads its own flights."""

from __future__ import annotations

import asyncio
import contextlib
import os

from redis.exceptions import RedisError

from gateway.redis.link import FLIGHT, RedisLink

# The holder renews its claim every third of this.
FLIGHT_LEASE_MS = 5000
# KEYS: the flight; ARGV: the holder's token, the lease (ms). Only the holder extends it.
RENEW_LUA = """
if redis.call('GET', KEYS[1]) == ARGV[1] then
  return redis.call('PEXPIRE', KEYS[1], ARGV[2])
end
return 0
"""
# KEYS: the flight; ARGV: the holder's token. Only the holder ends it.
RELEASE_LUA = """
if redis.call('GET', KEYS[1]) == ARGV[1] then
  return redis.call('DEL', KEYS[1])
end
return 0
"""


class SharedFlights:
    def __init__(self, link: RedisLink) -> None:
        self.link = link
        self._renew = link.client.register_script(RENEW_LUA)
        self._release = link.client.register_script(RELEASE_LUA)
        self._held: dict[str, asyncio.Task] = {}  # token -> the task renewing its claim

    async def claim(self, key: str) -> str | None:
        """None when another replica leads the flight for `key`; else this replica leads:
        the token to release it with ("" when Redis is away and nothing is held)."""
        if not self.link.up:
            return ""
        token = os.urandom(8).hex()
        try:
            won = await self.link.client.set(FLIGHT + key, token, nx=True, px=FLIGHT_LEASE_MS)
        except RedisError as exc:
            self.link.failed(exc)
            return ""
        if not won:
            return None
        self._held[token] = asyncio.create_task(self._keep(key, token))
        return token

    async def _keep(self, key: str, token: str) -> None:
        while True:
            await asyncio.sleep(FLIGHT_LEASE_MS / 3000)
            with contextlib.suppress(RedisError):
                await self._renew(keys=[FLIGHT + key], args=[token, FLIGHT_LEASE_MS])

    async def release(self, key: str, token: str) -> None:
        """End this replica's flight for `key`: the waiting replicas read the stored answer,
        or (none was stored) the first to claim the flight next calls upstream."""
        renewal = self._held.pop(token, None)
        if renewal is None:
            return
        renewal.cancel()
        with contextlib.suppress(RedisError):
            await self._release(keys=[FLIGHT + key], args=[token])
