"""The live call over WebRTC (aiortc): camera tracks in, synthesized tracks out.

Each browser tab that joins a room is a :class:`Party`. Its camera track feeds its own
:class:`~facevid2vid.serve.session.CallDirection` (tracker -> encoder -> lossy link ->
decoder), stepped in a worker thread of its own; every direction shares the server's one
Animator. The track sent back to a party shows the other party's received frames, or, while
it is alone in the room, its own (a loopback through the codec). Queues are bounded at every
stage: the camera inbox keeps the newest frames (older ones are dropped and counted), and the
outgoing track always sends the latest frame at its own pace. A party whose connection fails
or closes, or that hangs up, is removed and its thread and codec state are freed.
"""
from __future__ import annotations

import asyncio
import logging
import time
from concurrent.futures import ThreadPoolExecutor

import numpy as np

from facevid2vid.serve.session import CallDirection, CapturedFrame
from facevid2vid.serve.settings import CallSettings, LinkSettings
from facevid2vid.serve.uploads import UploadError, check_id, new_id

log = logging.getLogger(__name__)


def _placeholder(size: int) -> np.ndarray:
    """A dark grey frame with a lighter cross: shown until frames arrive."""
    frame = np.full((size, size, 3), 40, np.uint8)
    mid = size // 2
    frame[mid - 1:mid + 1, :, :] = 90
    frame[:, mid - 1:mid + 1, :] = 90
    return frame


KEEPALIVE = 1.0  # seconds: the outgoing track repeats its frame when nothing new came for this long


def _outgoing_track(party: "Party"):
    from fractions import Fraction

    from aiortc import VideoStreamTrack
    from av import VideoFrame

    start = time.monotonic()

    class SynthesizedTrack(VideoStreamTrack):
        """Sends each new received frame as it comes (no frame is encoded twice, except to keep alive)."""

        async def recv(self):
            try:
                await asyncio.wait_for(party.fresh.wait(), KEEPALIVE)
            except asyncio.TimeoutError:
                pass
            party.fresh.clear()
            frame = VideoFrame.from_ndarray(party.shown_frame(), format="rgb24")
            frame.pts, frame.time_base = int((time.monotonic() - start) * 90000), Fraction(1, 90000)
            return frame

    return SynthesizedTrack()


class Party:
    """One browser tab in a call: its peer connection, its direction, its worker thread."""

    def __init__(self, room: "Room", pc, animator, settings: CallSettings):
        self.id = new_id()
        self.room, self.pc = room, pc
        self.direction = CallDirection(animator, settings, name=f"{room.name}/{self.id[:6]}")
        self.pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix=f"call-{self.id[:6]}")
        self.wake = asyncio.Event()  # camera frames wait
        self.fresh = asyncio.Event()  # a new frame for this party to see
        self.latest: np.ndarray | None = None  # last frame this party's receiver produced
        self.blank = _placeholder(settings.output_size)
        self.tasks: list[asyncio.Task] = []
        self.closed = False

    def shown_frame(self) -> np.ndarray:
        """What this party sees: the other party's frames, or its own while alone."""
        other = self.room.partner(self)
        frame = (other or self).latest
        return frame if frame is not None else self.blank

    def receiving(self) -> "Party":
        return self.room.partner(self) or self

    async def read_camera(self, track) -> None:
        from aiortc.mediastreams import MediaStreamError

        while not self.closed:
            try:
                frame = await track.recv()
            except MediaStreamError:
                break
            self.direction.inbox.put(CapturedFrame(frame, time.monotonic()))  # converted if it is used
            self.wake.set()

    async def pump(self) -> None:
        """Step the direction whenever camera frames wait (one step at a time, in the worker thread)."""
        loop = asyncio.get_running_loop()
        while not self.closed:
            await self.wake.wait()
            self.wake.clear()
            try:
                out = await loop.run_in_executor(self.pool, self.direction.step)
            except RuntimeError:  # the pool was shut down while closing
                break
            if out:
                self.latest = out[-1].image
                (self.room.partner(self) or self).fresh.set()  # whoever sees this direction

    async def close(self) -> None:
        if self.closed:
            return
        self.closed = True
        self.room.leave(self)
        other = self.room.partner(self)
        if other is not None:
            other.fresh.set()  # it sees itself again
        self.wake.set()
        for task in self.tasks:
            task.cancel()
        self.pool.shutdown(wait=False, cancel_futures=True)
        await self.pc.close()


class Room:
    """The parties of one call (at most ``capacity``)."""

    def __init__(self, name: str, capacity: int):
        self.name, self.capacity = name, capacity
        self.parties: list[Party] = []

    def partner(self, party: Party) -> Party | None:
        return next((p for p in self.parties if p is not party), None)

    def leave(self, party: Party) -> None:
        if party in self.parties:
            self.parties.remove(party)


def _fresh(settings: CallSettings) -> CallSettings:
    """A copy of the call settings for one party (its own link: the loss slider changes only its own)."""
    from dataclasses import asdict, replace

    return replace(settings, link=LinkSettings(**asdict(settings.link)))


def check_room(name: str) -> str:
    import re

    if not isinstance(name, str) or not re.fullmatch(r"[A-Za-z0-9_-]{1,32}", name):
        raise UploadError("a room name is 1 to 32 letters, digits, '-' or '_'")
    return name


class CallManager:
    """Rooms and parties of the server; every call shares ``animator``."""

    def __init__(self, animator, settings: CallSettings, max_parties: int = 2, max_rooms: int = 4):
        self.animator, self.settings = animator, settings
        self.max_parties, self.max_rooms = max_parties, max_rooms
        self.rooms: dict[str, Room] = {}
        self.parties: dict[str, Party] = {}

    def _room(self, name: str) -> Room:
        room = self.rooms.get(check_room(name))
        if room is None:
            if len(self.rooms) >= self.max_rooms:
                raise UploadError(f"{len(self.rooms)} calls are running already: try again later", status=503)
            room = self.rooms[name] = Room(name, self.max_parties)
        if len(room.parties) >= room.capacity:
            raise UploadError(f"room {name!r} is full ({room.capacity} people)", status=409)
        return room

    async def offer(self, sdp: str, kind: str, room_name: str = "default") -> dict:
        """Answer a browser's offer: a new party in the room (its camera in, synthesized video out)."""
        from aiortc import RTCConfiguration, RTCPeerConnection, RTCSessionDescription

        room = self._room(room_name)
        pc = RTCPeerConnection(RTCConfiguration(iceServers=[]))  # local network only: no STUN server
        party = Party(room, pc, self.animator, _fresh(self.settings))
        room.parties.append(party)
        self.parties[party.id] = party

        @pc.on("track")
        def on_track(track):
            if track.kind == "video":
                party.tasks.append(asyncio.ensure_future(party.read_camera(track)))
                pc.addTrack(_outgoing_track(party))

        @pc.on("connectionstatechange")
        async def on_state():
            if pc.connectionState in ("failed", "closed"):
                await self.remove(party)

        try:
            await pc.setRemoteDescription(RTCSessionDescription(sdp=sdp, type=kind))
            await pc.setLocalDescription(await pc.createAnswer())
        except Exception as exc:  # noqa: BLE001 - a malformed offer is the client's error
            await self.remove(party)
            raise UploadError(f"cannot answer this offer: {exc}") from None
        party.tasks.append(asyncio.ensure_future(party.pump()))
        log.info("call %s: party %s joined (%d in the room)", room.name, party.id[:6], len(room.parties))
        return {"sdp": pc.localDescription.sdp, "type": pc.localDescription.type, "peer": party.id,
                "room": room.name}

    def get(self, ident: str) -> Party:
        party = self.parties.get(check_id(ident, "call party"))
        if party is None:
            raise UploadError("unknown call party (the call has ended)", status=404)
        return party

    def stats(self, ident: str) -> dict:
        party = self.get(ident)
        receiving = party.receiving()
        return {"peer": party.id, "room": party.room.name, "parties": len(party.room.parties),
                "receiving_from": "self" if receiving is party else "other",
                "connection": party.pc.connectionState,
                "sending": party.direction.snapshot(), "receiving": receiving.direction.snapshot()}

    def history(self, ident: str, seq: int, which: str = "sending") -> dict:
        party = self.get(ident)
        direction = party.direction if which == "sending" else party.receiving().direction
        snap = direction.find(int(seq))
        if snap is None:
            raise UploadError(f"no figures numbered {seq} (only the recent ones are kept)", status=404)
        return snap

    def set_loss(self, ident: str, loss: float) -> float:
        from facevid2vid.errors import InputError

        try:
            self.get(ident).direction.set_loss(float(loss))
        except (InputError, TypeError, ValueError) as exc:
            raise UploadError(str(exc)) from None
        return float(loss)

    def set_compare(self, ident: str, on) -> bool:
        if not isinstance(on, bool):
            raise UploadError("compare is true or false")
        self.get(ident).direction.set_compare(on)
        return on

    def h264_frame(self, ident: str) -> np.ndarray:
        """The latest frame of a party's H.264 comparison tile (its own camera, coded by libx264)."""
        tile = self.get(ident).direction.h264
        if tile is None or tile.latest is None:
            raise UploadError("no H.264 frame yet (switch the comparison on; it starts 2 s into the call)",
                              status=404)
        return tile.latest

    async def remove(self, party: Party) -> None:
        if self.parties.pop(party.id, None) is None:
            return  # removed already (closing the connection reports "closed" once more)
        await party.close()
        if not party.room.parties:
            self.rooms.pop(party.room.name, None)
        log.info("call %s: party %s left", party.room.name, party.id[:6])

    async def close_all(self) -> None:
        for party in list(self.parties.values()):
            await self.remove(party)
