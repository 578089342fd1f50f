"""The peers we know: a bounded table of frozen ``Peer`` values and a stream of its changes."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from dataclasses import dataclass, replace
from typing import Literal

from argentic_edge.discovery.record import Peer, PeerState


@dataclass(frozen=True)
class PeerEvent:
    kind: Literal["added", "updated", "removed"]
    peer: Peer


class PeerEvents:
    """One subscriber's bounded queue of table changes. When it overflows, the oldest event
    goes (and is counted): a slow reader must never hold the table or grow memory."""

    def __init__(self, table: PeerTable, maxsize: int) -> None:
        self._table = table
        self._queue: asyncio.Queue[PeerEvent] = asyncio.Queue(maxsize)
        self.dropped = 0

    def _put(self, event: PeerEvent) -> None:
        if self._queue.full():
            self._queue.get_nowait()
            self.dropped += 1
        self._queue.put_nowait(event)

    async def get(self) -> PeerEvent:
        return await self._queue.get()

    def get_nowait(self) -> PeerEvent | None:
        return None if self._queue.empty() else self._queue.get_nowait()

    def __aiter__(self) -> AsyncIterator[PeerEvent]:
        return self._iterate()

    async def _iterate(self) -> AsyncIterator[PeerEvent]:
        while True:
            yield await self._queue.get()

    def close(self) -> None:
        self._table._subscribers.discard(self)


class PeerTable:
    """The peers we know, by id, at most ``max_peers`` of them, with an event stream.

    When full, a new peer takes the place of the lost peer seen longest ago; if no peer is
    lost, the newcomer is refused and counted (a flood of fake records cannot grow memory).
    """

    def __init__(self, max_peers: int = 64) -> None:
        self.max_peers = max_peers
        self.refused = 0
        self._peers: dict[str, Peer] = {}
        self._subscribers: set[PeerEvents] = set()

    def __len__(self) -> int:
        return len(self._peers)

    def __contains__(self, peer_id: object) -> bool:
        return peer_id in self._peers

    def get(self, peer_id: str) -> Peer | None:
        return self._peers.get(peer_id)

    def peers(self) -> list[Peer]:
        return sorted(self._peers.values(), key=lambda p: (p.name.lower(), p.id))

    def subscribe(self, maxsize: int = 256) -> PeerEvents:
        events = PeerEvents(self, maxsize)
        self._subscribers.add(events)
        return events

    def _emit(self, kind: Literal["added", "updated", "removed"], peer: Peer) -> None:
        for subscriber in list(self._subscribers):
            subscriber._put(PeerEvent(kind, peer))

    def upsert(self, peer: Peer) -> Peer | None:
        """Record what the network just told us. A lost peer that answers is discovered again;
        otherwise its state is kept. None if the table is full."""
        existing = self._peers.get(peer.id)
        if existing is None:
            if len(self._peers) >= self.max_peers and not self._evict():
                self.refused += 1
                return None
            self._peers[peer.id] = peer
            self._emit("added", peer)
            return peer
        state: PeerState = "discovered" if existing.state == "lost" else existing.state
        merged = replace(peer, first_seen=existing.first_seen, state=state)
        self._peers[peer.id] = merged
        if not merged.same_record(existing) or merged.state != existing.state:
            self._emit("updated", merged)
        return merged

    def _evict(self) -> bool:
        lost = [p for p in self._peers.values() if p.state == "lost"]
        if not lost:
            return False
        self.remove(min(lost, key=lambda p: p.last_seen).id)
        return True

    def touch(self, peer_id: str, when: float) -> None:
        """The peer answered: move last_seen, without an event (that would be every probe)."""
        peer = self._peers.get(peer_id)
        if peer is not None and peer.state != "lost":
            self._peers[peer_id] = replace(peer, last_seen=when)

    def set_state(self, peer_id: str, state: PeerState) -> Peer | None:
        peer = self._peers.get(peer_id)
        if peer is None or peer.state == state:
            return peer
        changed = replace(peer, state=state)
        self._peers[peer_id] = changed
        self._emit("updated", changed)
        return changed

    def remove(self, peer_id: str) -> None:
        peer = self._peers.pop(peer_id, None)
        if peer is not None:
            self._emit("removed", peer)
