"""Who holds each call's room in a cluster: owner claims and process presence in Redis.

Each consultation's room lives in exactly one web process, its *owner*, named
under ``tc:owner:<consultation>``; every process keeps ``tc:node:<node>`` alive
with a lease it renews (``lease_seconds``). A room is held while its key names
a process whose presence has not lapsed: the first ``join`` after its owner
died claims it for a living process (``claim``, one Lua script). ``Owners`` is
one process's side of that; ``cluster.Cluster`` forwards the frames and pushes
and decides, from ``lapsed``, which sockets and members a dead process takes
with it.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Container, Iterable
from typing import TYPE_CHECKING

if TYPE_CHECKING:  # imported by whoever makes the client (web/app.py), only with Redis
    from redis.asyncio import Redis

log = logging.getLogger(__name__)

PREFIX = "tc:"
LEASE_SECONDS = 5.0
# A room's key outlives its owner's death by this much at most (cleaning up);
# whether it is held is decided by the owner's presence, renewed every lease.
ROOM_TTL_SECONDS = 24 * 3600

# Claim the room for ``me`` unless a living process holds it; returns the owner.
_CLAIM = """
local owner = redis.call('GET', KEYS[1])
if owner and owner ~= ARGV[1] and redis.call('EXISTS', ARGV[3] .. owner) == 1 then
  return owner
end
redis.call('SET', KEYS[1], ARGV[1], 'PX', ARGV[2])
return ARGV[1]
"""

# Give a room up only if it is still ours.
_RELEASE = """
if redis.call('GET', KEYS[1]) == ARGV[1] then
  return redis.call('DEL', KEYS[1])
end
return 0
"""


class Owners:
    """This process's presence in Redis and the rooms it holds."""

    def __init__(self, redis: Redis, *, node: str, lease_seconds: float) -> None:
        """Wire it to the shared Redis (``decode_responses=True``) as process ``node``."""
        self.redis = redis
        self.node = node
        self.lease_ms = int(lease_seconds * 1000)
        self.lease_seconds = lease_seconds
        # Rooms claimed here -> when (loop time); released when they close.
        self._owned: dict[str, float] = {}
        self._renewed = 0.0
        self._claim = redis.register_script(_CLAIM)
        self._release = redis.register_script(_RELEASE)

    async def announce(self) -> None:
        """Say this process is alive (``renew`` keeps it so)."""
        await self.redis.set(node_key(self.node), "1", px=self.lease_ms)

    async def leave(self) -> None:
        """Give up this process's rooms and presence (the others move on at once)."""
        for cid in list(self._owned):
            await self._release(keys=[owner_key(cid)], args=[self.node])
        await self.redis.delete(node_key(self.node))

    async def claim(self, consultation_id: str) -> tuple[str, bool]:
        """The process owning the room of ``consultation_id`` (this one if free),
        and whether this process took it just now."""
        owner = str(
            await self._claim(
                keys=[owner_key(consultation_id)],
                args=[self.node, ROOM_TTL_SECONDS * 1000, PREFIX + "node:"],
            )
        )
        if owner != self.node or consultation_id in self._owned:
            return owner, False
        self._owned[consultation_id] = asyncio.get_running_loop().time()
        log.info("consultation=%s room held by this process", consultation_id)
        return owner, True

    async def renew(self, open_rooms: Container[str]) -> None:
        """Renew this process's presence; give up the rooms held here that
        closed (``open_rooms`` has those still open) at least a lease ago."""
        # One round trip for our presence, whatever the number of calls: a room
        # is ours while its key names us and we are alive (the claim script).
        before = await self.redis.set(node_key(self.node), "1", px=self.lease_ms, get=True)
        if before is None and self._owned:
            log.warning("cluster: this process was taken for dead (a stall of a lease)")
        now = asyncio.get_running_loop().time()
        closed = [
            cid
            for cid, since in self._owned.items()
            if cid not in open_rooms and now - since >= self.lease_seconds
        ]
        if closed or now - self._renewed >= ROOM_TTL_SECONDS / 4:
            async with self.redis.pipeline(transaction=False) as pipe:
                for cid in closed:
                    del self._owned[cid]
                    await self._release(keys=[owner_key(cid)], args=[self.node], client=pipe)
                if now - self._renewed >= ROOM_TTL_SECONDS / 4:
                    # Keys of a dead process's rooms lapse by themselves one day.
                    self._renewed = now
                    for cid in self._owned:
                        pipe.pexpire(owner_key(cid), ROOM_TTL_SECONDS * 1000)
                await pipe.execute()

    async def lapsed(self, nodes: Iterable[str]) -> set[str]:
        """Those of ``nodes`` whose presence has lapsed (dead processes)."""
        order = sorted(nodes)
        if not order:
            return set()
        async with self.redis.pipeline(transaction=False) as pipe:
            for n in order:
                pipe.exists(node_key(n))
            flags = await pipe.execute()
        return {n for n, flag in zip(order, flags, strict=True) if not flag}

    async def rooms_held_elsewhere(self) -> set[str]:
        """Consultations whose room a living other process holds (their legs
        are being written there: a starting process leaves them alone)."""
        owners: dict[str, str] = {}
        async for key in self.redis.scan_iter(match=PREFIX + "owner:*", count=500):
            value = await self.redis.get(key)
            if value is not None and value != self.node:
                owners[str(key).removeprefix(PREFIX + "owner:")] = str(value)
        alive = {n for n in set(owners.values()) if await self.redis.exists(node_key(n))}
        return {cid for cid, node in owners.items() if node in alive}


def node_key(node: str) -> str:
    """The key of a process's presence."""
    return PREFIX + "node:" + node


def owner_key(consultation_id: str) -> str:
    """The key naming the process that holds a consultation's room."""
    return PREFIX + "owner:" + consultation_id
