"""Several web processes behind one Redis: each call's room has an owner process.

Without Redis (the embedded default) none of this runs: ``web/ws.py`` hands every
frame straight to ``Calls`` and pushes go through the process's ``Hub``.

With Redis, each consultation's room lives in exactly one process, its *owner*,
claimed in Redis under ``tc:owner:<consultation>`` with a lease the owner renews
(``lease_seconds``; every process also keeps ``tc:node:<node>`` alive the same
way: ``owners.Owners``). So the room logic, the chat refs, the resume grace and the recording legs
stay where they are today, in ``Calls`` and the owner's recorder, unchanged:

- A socket whose ``join`` names a room owned elsewhere is *forwarded*: this
  process publishes each of its frames, as they came, to the owner's channel
  (``tc:in:<owner>``), with who sent it. The owner runs them through its own
  ``Calls.receive`` for a ``RemoteChannel``, a ``Channel`` whose sends are
  published to the socket's process (``tc:in:<node>``), which writes them to the
  socket. Frames of one socket keep their order both ways (one publisher task per
  process, one lane per socket).
- Pushes (``consultation.changed``, ``consultation.overdue``) and hanging up an
  account's sockets are published to every process (``tc:all``); each delivers to
  its own sockets with its own ``Hub`` (the audience is decided where the socket
  is, from the consultation's ids and states: no reason or question in Redis).
- When a process dies its leases lapse. The processes that forwarded sockets to
  it close them with "going away"; the pages reconnect and rejoin (as after a
  server restart), and the first join claims the room for a living process.
  The owner of a room notices a dead forwarding process the same way and treats
  its sockets as dropped (the resume grace starts).

Nothing patient-related travels through Redis but the signaling itself (SDP,
candidates, chat lines, as between the pages), and an account's directory
entry so the owner knows who acts.
"""

from __future__ import annotations

import asyncio
import json
import logging
import uuid
from collections import deque
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any, Protocol, runtime_checkable

from records.models import Consultation
from signaling.call import messages as m
from signaling.call.calls import Calls
from signaling.call.cluster_notices import close_account_notice, sessions_changed_notice
from signaling.call.cluster_rows import (
    actor_from_json,
    actor_to_json,
    consultation_for_audience,
    row_from_json,
)
from signaling.call.cluster_wire import Address, Publisher, Subscription
from signaling.call.hub import Channel, ConsultationPushes, Hub
from signaling.call.outbound import ServerMessage, encode
from signaling.call.owners import LEASE_SECONDS, PREFIX, Owners
from signaling.workflow.base import Actor

if TYPE_CHECKING:  # imported by whoever makes the client (web/app.py), only with Redis
    from redis.asyncio import Redis

log = logging.getLogger(__name__)


@runtime_checkable
class Reconnectable(Protocol):
    """A channel the server can close so that the client reconnects (a WebSocket)."""

    async def reconnect(self, reason: str) -> None:
        """Close, telling the client to come back (it resumes its call)."""
        ...


# -- ordered delivery -------------------------------------------------------------


class _Lane:
    """Runs the jobs given to it one after another, in a task of its own while
    there is work (frames of one socket keep their order; sockets do not wait
    for each other)."""

    def __init__(self) -> None:
        self._jobs: deque[Callable[[], Awaitable[None]]] = deque()
        self._task: asyncio.Task[None] | None = None

    def push(self, job: Callable[[], Awaitable[None]]) -> None:
        self._jobs.append(job)
        if self._task is None:
            self._task = asyncio.get_running_loop().create_task(self._run())

    async def _run(self) -> None:
        try:
            while self._jobs:
                job = self._jobs.popleft()
                try:
                    await job()
                except Exception:
                    log.exception("cluster job failed")
        finally:
            self._task = None

    def cancel(self) -> None:
        self._jobs.clear()
        if self._task is not None:
            self._task.cancel()


class RemoteChannel:
    """A member's socket held by another process: sends are published to it."""

    def __init__(self, cluster: Cluster, node: str, sid: str, actor: Actor) -> None:
        self.cluster = cluster
        self.node = node
        self.sid = sid
        self.actor = actor
        self.lane = _Lane()

    async def send(self, message: ServerMessage) -> None:
        """Publish one message to the socket's process."""
        await self.send_text(encode(message))

    async def send_text(self, text: str) -> None:
        """Publish one encoded message to the socket's process."""
        self.cluster.publish_text(in_channel(self.node), f"o{self.sid}\n{text}")


class Cluster:
    """This process's part in a cluster of web processes sharing one Redis.

    ``web/ws.py`` gives it every frame (``receive``) and every closed socket
    (``disconnected``) instead of ``Calls``; it is the workflow's ``Notifier``
    and the administration's ``AccountSockets``.
    """

    def __init__(
        self,
        redis: Redis,
        *,
        hub: Hub,
        pushes: ConsultationPushes,
        address: Address,
        node_id: str | None = None,
        lease_seconds: float = LEASE_SECONDS,
        on_claim: Callable[[str], Awaitable[object]] | None = None,
    ) -> None:
        """Wire the cluster; ``start`` (with the ``Calls`` to feed) begins the work.

        Args:
            redis: a client of the shared Redis (``decode_responses=True``).
            address: the same Redis, for the frames (``cluster_wire``).
            hub: this process's sockets, for pushes.
            pushes: this process's push delivery (and its change listeners).
            node_id: this process's name in Redis (a fresh one by default).
            lease_seconds: how long a room's owner and a process stay known
                without renewing; a dead process's calls move after this.
            on_claim: called with a consultation id when this process takes
                its room, before anyone joins it here (the recording service
                repairs the legs a dead owner left, so new ones continue them
                in numbered parts).
        """
        self.redis = redis
        self.address = address
        self._wire = Publisher(address)
        self.hub = hub
        self.pushes = pushes
        self.node = node_id or uuid.uuid4().hex[:12]
        self.owners = Owners(redis, node=self.node, lease_seconds=lease_seconds)
        self.calls: Calls | None = None
        self.on_claim = on_claim
        # Told the digest of a session ended elsewhere (a logout): its sockets here close.
        self.on_session_ended: Callable[[str], Awaitable[object]] | None = None
        # Told that another process wrote to the sessions or accounts (a logout,
        # a deactivated account): the sessions this one cached are read again.
        self.on_sessions_changed: Callable[[], None] | None = None
        # Local sockets forwarded to an owner: channel -> (sid, owner node).
        self._forwarded: dict[Channel, tuple[str, str]] = {}
        self._by_sid: dict[str, Channel] = {}
        self._out_lanes: dict[str, _Lane] = {}
        # Sockets of other processes in rooms owned here: (node, sid) -> channel.
        self._proxies: dict[tuple[str, str], RemoteChannel] = {}
        self._outbox: deque[tuple[str, str]] = deque()
        self._outbox_ready = asyncio.Event()
        self._tasks: list[asyncio.Task[None]] = []
        self.forwarded_frames = 0

    # -- lifecycle ----------------------------------------------------------------

    async def start(self, calls: Calls) -> None:
        """Announce this process, subscribe, and start the publisher and heartbeat."""
        self.calls = calls
        await self.owners.announce()
        subscription = Subscription(self.address, [self._in_channel(self.node), PREFIX + "all"])
        await subscription.open()
        loop = asyncio.get_running_loop()
        self._tasks = [
            loop.create_task(self._listen(subscription)),
            loop.create_task(self._publisher()),
            loop.create_task(self._heartbeat()),
        ]
        log.info("cluster: node %s on Redis", self.node)

    async def close(self) -> None:
        """Stop; give up this process's rooms and presence (the others move on at once)."""
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        await self._flush()  # what the closing sockets said last ("gone") still goes
        for lane in self._out_lanes.values():
            lane.cancel()
        for proxy in self._proxies.values():
            proxy.lane.cancel()
        try:
            # The others take this process for gone when its lease lapses: a
            # goodbye that takes longer (Redis hanging; each command would wait
            # out redis-py's 5 s) saves nobody anything and holds up a restart.
            async with asyncio.timeout(self.owners.lease_seconds):
                await self.owners.leave()
        except Exception as exc:  # TimeoutError included
            log.info("cluster: could not say goodbye: %s", type(exc).__name__)
        await self._wire.close()
        await self.redis.aclose()

    # -- the socket side ------------------------------------------------------------

    async def receive(self, actor: Actor, channel: Channel, raw: str | bytes) -> None:
        """One frame from a local socket: handled here or forwarded to the room's owner."""
        calls = self._calls()
        where = self._forwarded.get(channel)
        if where is not None:
            self._forward(where[1], where[0], None, raw)
            return
        if not isinstance(raw, str) or calls.is_joined(channel):
            # In a call owned here (or refused there, as today): the path of one process.
            await calls.receive(actor, channel, raw)
            return
        try:
            msg = m.parse(raw)
        except m.ProtocolError:
            msg = None
        if not isinstance(msg, m.Join):
            await calls.receive(actor, channel, raw)
            return
        owner = await self.claim(msg.consultation_id)
        if owner == self.node:
            await calls.receive(actor, channel, raw)
            return
        sid = uuid.uuid4().hex
        self._forwarded[channel] = (sid, owner)
        self._by_sid[sid] = channel
        # Who acts goes with the first frame only: the owner keeps it for the socket.
        self._forward(owner, sid, actor_to_json(actor), raw)

    def disconnected(self, channel: Channel) -> None:
        """A local socket closed: tell its room's owner (its grace starts there)."""
        where = self._forwarded.pop(channel, None)
        if where is None:
            self._calls().disconnected(channel)
            return
        sid, owner = where
        self._by_sid.pop(sid, None)
        lane = self._out_lanes.pop(sid, None)
        if lane is not None:
            lane.cancel()
        self.publish(owner, {"op": "gone", "from": self.node, "sid": sid})

    def _forward(self, owner: str, sid: str, actor_json: str | None, raw: str | bytes) -> None:
        self.forwarded_frames += 1
        text = raw if isinstance(raw, str) else raw.decode("utf-8", "replace")
        # The hot path in plain text, not JSON (no escaping of the frame again):
        # "i<from>\n<sid>\n<frame>", or "I...\n<actor>\n<frame>" with who acts.
        if actor_json is None:
            data = f"i{self.node}\n{sid}\n{text}"
        else:
            data = f"I{self.node}\n{sid}\n{actor_json}\n{text}"
        self.publish_text(self._in_channel(owner), data)

    async def claim(self, consultation_id: str) -> str:
        """The process owning the room of ``consultation_id``: this one if free."""
        owner, taken = await self.owners.claim(consultation_id)
        if taken and self.on_claim is not None and consultation_id not in self._calls().rooms:
            try:
                await self.on_claim(consultation_id)
            except Exception:
                log.exception("consultation=%s taking the room over failed", consultation_id)
        return owner

    # -- pushes (the workflow's Notifier, the admin's AccountSockets) -------------

    async def consultation_changed(self, consultation: Consultation) -> None:
        """Every process tells its listeners and pushes to its sockets."""
        self.publish(
            PREFIX + "all",
            {"op": "changed", "consultation": consultation_for_audience(consultation)},
            raw_channel=True,
        )

    async def consultation_overdue(self, consultation: Consultation, deadline: str) -> None:
        """Every process pushes ``consultation.overdue`` to its coordinators who may see it."""
        self.publish(
            PREFIX + "all",
            {
                "op": "overdue",
                "consultation": consultation_for_audience(consultation),
                "deadline": deadline,
            },
            raw_channel=True,
        )

    async def close_account(self, account_id: str) -> int:
        """Hang up the account's sockets in every process; how many were here."""
        count = await self.hub.close_account(account_id)
        self.publish(PREFIX + "all", close_account_notice(self.node, account_id), raw_channel=True)
        return count

    def session_ended(self, digest: str) -> None:
        """Tell the other processes a session ended (by a digest of its token:
        the token itself, a credential, does not go through Redis)."""
        self.publish(
            PREFIX + "all",
            {"op": "session_ended", "from": self.node, "digest": digest},
            raw_channel=True,
        )

    def sessions_changed(self) -> None:
        """Tell the other processes this one wrote to the sessions or accounts."""
        self.publish(PREFIX + "all", sessions_changed_notice(self.node), raw_channel=True)

    # -- Redis traffic ------------------------------------------------------------

    def publish(self, node: str, payload: dict[str, Any], *, raw_channel: bool = False) -> None:
        """Queue one message to a process (or to ``tc:all``); sent in order, in batches."""
        channel = node if raw_channel else self._in_channel(node)
        self.publish_text(channel, json.dumps(payload))

    def publish_text(self, channel: str, data: str) -> None:
        """Queue one message as it is."""
        self._outbox.append((channel, data))
        self._outbox_ready.set()

    async def _publisher(self) -> None:
        # One task sends everything: the order of frames is kept, and what
        # piled up meanwhile goes in one round trip.
        while True:
            await self._outbox_ready.wait()
            self._outbox_ready.clear()
            await self._flush()

    async def _flush(self) -> None:
        batch = list(self._outbox)
        self._outbox.clear()
        if not batch:
            return
        try:
            await self._wire.publish(batch)
        except (ConnectionError, OSError) as exc:
            log.warning("cluster: %d message(s) not published: %s", len(batch), exc)

    async def _listen(self, subscription: Subscription) -> None:
        try:
            while True:
                try:
                    async for batch in subscription.messages():
                        for data in batch:
                            try:
                                self._dispatch(data)
                            except Exception:
                                log.exception("cluster: message not handled")
                except (ConnectionError, OSError) as exc:
                    log.warning("cluster: subscription lost (%s); resubscribing", exc)
                    subscription.close()
                    await asyncio.sleep(0.5)  # a backoff timer: Redis is away
                    try:
                        await subscription.open()
                    except (ConnectionError, OSError):
                        continue
        finally:
            subscription.close()

    def _dispatch(self, data: str) -> None:
        kind = data[:1]
        if kind == "o":
            sid, text = data[1:].split("\n", 1)
            channel = self._by_sid.get(sid)
            if channel is not None:
                lane = self._out_lanes.get(sid)
                if lane is None:
                    lane = self._out_lanes[sid] = _Lane()
                lane.push(lambda: _deliver(channel, text))
            return
        if kind == "r":
            sid = data[1:]
            socket = self._by_sid.pop(sid, None)
            if socket is not None:
                self._forwarded.pop(socket, None)
                if isinstance(socket, Reconnectable):
                    self._keep(
                        asyncio.get_running_loop().create_task(
                            _quietly(socket.reconnect("the call is on another server"))
                        )
                    )
            return
        if kind in ("i", "I"):
            if kind == "i":
                node, sid, raw = data[1:].split("\n", 2)
                actor_json = None
            else:
                node, sid, actor_json, raw = data[1:].split("\n", 3)
            proxy = self._proxies.get((node, sid))
            if proxy is None:
                if actor_json is None:
                    return  # the socket's first frame went to a process that died since
                proxy = RemoteChannel(self, node, sid, actor_from_json(actor_json))
                self._proxies[(node, sid)] = proxy
            calls = self._calls()
            proxy.lane.push(lambda: self._owner_receive(calls, proxy, raw))
            return
        msg: dict[str, Any] = json.loads(data)
        op = msg["op"]
        if op == "gone":
            gone = self._proxies.pop((msg["from"], msg["sid"]), None)
            if gone is not None:
                gone.lane.push(lambda: self._proxy_gone(gone))
        elif op in ("changed", "overdue"):
            consultation = row_from_json(Consultation, msg["consultation"])
            task = asyncio.get_running_loop().create_task(
                self.pushes.consultation_changed(consultation)
                if op == "changed"
                else self.pushes.consultation_overdue(consultation, msg["deadline"])
            )
            self._keep(task)
        elif op == "session_ended" and msg["from"] != self.node:
            if self.on_session_ended is not None:
                self._keep(
                    asyncio.get_running_loop().create_task(
                        _quietly(self.on_session_ended(msg["digest"]))
                    )
                )
        elif op == "sessions_changed" and msg["from"] != self.node:
            if self.on_sessions_changed is not None:
                self.on_sessions_changed()
        elif op == "close_account" and msg["from"] != self.node:
            self._keep(
                asyncio.get_running_loop().create_task(self._close_account(msg["account_id"]))
            )

    async def _close_account(self, account_id: str) -> None:
        await self.hub.close_account(account_id)

    async def _owner_receive(self, calls: Calls, proxy: RemoteChannel, raw: str) -> None:
        msg: m.ClientMessage | None = None
        if '"join"' in raw:  # cheaper than parsing every frame twice
            try:
                msg = m.parse(raw)
            except m.ProtocolError:
                msg = None
        if isinstance(msg, m.Join) and not calls.is_joined(proxy):
            # Sent here because this process held the room; keep it so. A socket
            # that left its call here and joins one held elsewhere is sent away
            # to come back (its new socket is routed to that call's process).
            if await self.claim(msg.consultation_id) != self.node:
                self.publish_text(in_channel(proxy.node), f"r{proxy.sid}")
                return
        await calls.receive(proxy.actor, proxy, raw)

    async def _proxy_gone(self, proxy: RemoteChannel) -> None:
        self._calls().disconnected(proxy)

    def _keep(self, task: asyncio.Task[None]) -> None:
        self._tasks.append(task)
        task.add_done_callback(lambda t: self._tasks.remove(t) if t in self._tasks else None)

    async def _heartbeat(self) -> None:
        period = self.owners.lease_seconds / 4
        while True:
            # A lease timer: others learn of our death only by its lapsing.
            await asyncio.sleep(period)
            try:
                await self._beat()
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                log.warning("cluster: heartbeat failed: %s", exc)

    async def _beat(self) -> None:
        calls = self._calls()
        await self.owners.renew(calls.rooms)
        # Processes we depend on: owners of our forwarded sockets' rooms, and
        # the processes holding the sockets of members of our rooms.
        others = {owner for _, owner in self._forwarded.values()}
        others |= {node for node, _ in self._proxies}
        if not others:
            return
        dead = await self.owners.lapsed(others)
        for node in dead:
            log.warning("cluster: node %s is gone", node)
        for channel, (sid, owner) in list(self._forwarded.items()):
            if owner in dead:
                # The room's owner died: the page reconnects and rejoins, and its
                # join makes a living process the owner.
                self._forwarded.pop(channel, None)
                self._by_sid.pop(sid, None)
                if isinstance(channel, Reconnectable):
                    await channel.reconnect("the call moves to another server")
        for pkey, proxy in list(self._proxies.items()):
            if pkey[0] in dead:
                del self._proxies[pkey]
                calls.disconnected(proxy)

    # -- names ----------------------------------------------------------------------

    def _calls(self) -> Calls:
        if self.calls is None:
            raise RuntimeError("cluster not started")
        return self.calls

    @staticmethod
    def _in_channel(node: str) -> str:
        return in_channel(node)


async def _quietly(job: Awaitable[object]) -> None:
    try:
        await job
    except Exception:
        log.exception("cluster: job failed")


def in_channel(node: str) -> str:
    """The Redis channel a process listens on."""
    return PREFIX + "in:" + node


async def _deliver(channel: Channel, text: str) -> None:
    try:
        await channel.send_text(text)
    except Exception as exc:
        log.info("cluster: delivery failed: %s", type(exc).__name__)
