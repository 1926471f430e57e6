"""The server side of a live call, one direction at a time, with no network code.

A :class:`CallDirection` is one person's video on its way to the other party::

    camera frames -> CausalTracker (face crop) -> CallEncoder (.fv2v packets)
        -> LossyLink (drops or damages packets) -> Receiver (StreamDecoder) -> frames shown

The stream header travels with the call set-up (reliably, like the WebRTC offer); packets go
through the lossy link. When the receiver loses sync (a corrupt, missing or skipped packet)
it asks the sender for a key frame at once, and again every ``key_retry`` seconds until one
arrives (the request itself travels on a reliable feedback path, as RTCP would carry it).

Everything here is synchronous and thread-compatible: the WebRTC layer (:mod:`.rtc`) and
``benchmarks/call.py`` run :meth:`CallDirection.step` in a worker thread per direction, with
one shared :class:`~facevid2vid.inference.Animator`.
"""
from __future__ import annotations

import random
import threading
import time
from collections import Counter, deque
from dataclasses import dataclass

import numpy as np

from facevid2vid.codec import bitstream as bs
from facevid2vid.codec.decoder import StreamDecoder
from facevid2vid.codec.encoder import Encoder, EncoderSettings
from facevid2vid.serve.h264 import H264Tile
from facevid2vid.serve.settings import CallSettings, LinkSettings

KEY_REQUESTED = "requested"  # key frame reason: the receiver asked for it
COMPARE_AFTER = 2.0  # seconds of call before the H.264 tile takes the call's bitrate as its target


@dataclass
class CapturedFrame:
    """A camera frame as it reached the server."""

    image: object  # uint8 (H, W, 3) RGB, or an av.VideoFrame (converted only if it is used)
    time: float  # time.monotonic() on arrival

    def rgb(self) -> np.ndarray:
        if isinstance(self.image, np.ndarray):
            return self.image
        return self.image.to_ndarray(format="rgb24")


@dataclass
class OutputFrame:
    """A frame the receiver shows."""

    image: np.ndarray  # uint8 (S, S, 3) RGB, S = CallSettings.output_size
    index: int  # frame index in the stream
    is_key: bool
    latency: float  # seconds from the camera frame's arrival to this frame being ready


class CallEncoder(Encoder):
    """An :class:`~facevid2vid.codec.encoder.Encoder` that a receiver can ask for a key frame.

    The request is served at the next frame encoded (reason ``"requested"``), through the
    encoder's own decision hook, so the key frame is made exactly like any other.
    """

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.key_request = False

    def request_key_frame(self) -> None:
        self.key_request = True

    def _forced_reason(self, index: int, face_event: str | None) -> str | None:
        reason = super()._forced_reason(index, face_event)
        return reason or (KEY_REQUESTED if self.key_request else None)

    def _key_frame(self, frame, values, reason: str) -> list[bytes]:
        self.key_request = False
        return super()._key_frame(frame, values, reason)


class Inbox:
    """A bounded queue of camera frames: when full the oldest goes (a slow sender skips frames)."""

    def __init__(self, size: int):
        self.frames: deque[CapturedFrame] = deque(maxlen=max(1, size))
        self.lock = threading.Lock()
        self.received = 0
        self.dropped = 0

    def put(self, frame: CapturedFrame) -> None:
        with self.lock:
            if len(self.frames) == self.frames.maxlen:
                self.dropped += 1
            self.frames.append(frame)
            self.received += 1

    def take(self, n: int) -> list[CapturedFrame]:
        """Up to ``n`` waiting frames, oldest first; frames older than those are dropped."""
        with self.lock:
            while len(self.frames) > n:
                self.frames.popleft()
                self.dropped += 1
            out = list(self.frames)
            self.frames.clear()
            return out


class LossyLink:
    """The network: each packet is lost with probability ``loss`` (dropped, or one byte damaged)."""

    def __init__(self, settings: LinkSettings | None = None):
        self.settings = settings or LinkSettings()
        self.settings.validate()
        self.rng = random.Random(self.settings.seed)
        self.packets = 0
        self.bytes = Counter()  # by packet kind ("key", "motion", "end")
        self.dropped = 0
        self.corrupted = 0

    def set_loss(self, loss: float) -> None:
        settings = LinkSettings(float(loss), self.settings.corrupt_share, self.settings.seed)
        settings.validate()
        self.settings = settings

    def send(self, packet: bytes) -> bytes | None:
        """What arrives of ``packet``: itself, a damaged copy, or None."""
        self.packets += 1
        kind = bs.PACKET_NAMES.get(packet[0], "other").replace("motion-run", "motion")
        self.bytes[kind] += len(packet)
        if self.rng.random() >= self.settings.loss:
            return packet
        if self.rng.random() >= self.settings.corrupt_share:
            self.dropped += 1
            return None
        self.corrupted += 1
        data = bytearray(packet)
        data[self.rng.randrange(len(data))] ^= self.rng.randrange(1, 256)
        return bytes(data)

    def stats(self) -> dict:
        return {"loss": self.settings.loss, "packets": self.packets, "bytes": sum(self.bytes.values()),
                "key_bytes": self.bytes["key"], "motion_bytes": self.bytes["motion"],
                "dropped": self.dropped, "corrupted": self.corrupted}


class Sender:
    """Camera frames -> face crops at the model's size -> .fv2v packets."""

    def __init__(self, animator, settings: CallSettings):
        self.settings = settings
        self.size = animator.image_size
        codec = EncoderSettings(quality=settings.quality, drift_check_every=settings.drift_check_every,
                                min_keyframe_interval=settings.min_keyframe_interval)
        self.encoder = CallEncoder(animator, settings.fps, codec, frame_size=self.size)
        self.tracker = None
        self.times: dict[int, float] = {}  # frame index -> camera arrival time (recent frames)
        self.no_face = 0  # frames skipped because no face was ever seen
        self.seconds: Counter = Counter()  # time spent tracking and encoding
        self.face = False
        self.tap = None  # called with each batch of crops (the H.264 comparison tile)

    def _tracker(self, frame: np.ndarray):
        from facevid2vid.face.track import CausalTracker

        h, w = frame.shape[:2]
        if self.tracker is None or (self.tracker.width, self.tracker.height) != (w, h):
            self.tracker = CausalTracker(w, h, every=self.settings.detect_every)  # a new size: start over
        return self.tracker

    def crops(self, frames: list[CapturedFrame]) -> tuple[np.ndarray, np.ndarray, list[float]]:
        """(face crops uint8 (n, S, S, 3), face present (n,), arrival times) of the frames with a crop box."""
        from facevid2vid.face.crop import crop_frames

        crops, present, times = [], [], []
        for frame in frames:
            image = frame.rgb()
            state = self._tracker(image).update(image)
            self.face = state.present
            if state.box is None:
                self.no_face += 1
                continue
            crops.append(crop_frames(image[None], state.box, self.size)[0])
            present.append(state.present)
            times.append(frame.time)
        empty = np.zeros((0, self.size, self.size, 3), np.uint8)
        return (np.stack(crops) if crops else empty), np.asarray(present, bool), times

    def encode(self, frames: list[CapturedFrame]) -> list[bytes]:
        """Packets for the next camera frames (none for frames before a face was first seen)."""
        begin = time.monotonic()
        crops, present, times = self.crops(frames)
        self.seconds["track"] += time.monotonic() - begin
        if not len(crops):
            return []
        if self.tap is not None:
            self.tap(crops)
        first = self.encoder.frame_index
        for i, t in enumerate(times):
            self.times[first + i] = t
        for old in [k for k in self.times if k < first + len(times) - 4 * self.settings.window]:
            del self.times[old]
        begin = time.monotonic()
        packets = self.encoder.encode(crops, present)
        self.seconds["encode"] += time.monotonic() - begin
        return packets

    def stats(self) -> dict:
        s = self.encoder.stats
        return {"frames": s.frames, "no_face": self.no_face, "face": self.face, "key_frames": s.key_frames,
                "key_reasons": dict(s.key_reasons), "header_bytes": s.header_bytes, "key_bytes": s.key_bytes,
                "motion_bytes": s.motion_payload_bytes + s.motion_framing_bytes,
                "motion_payload_bytes": s.motion_payload_bytes,
                "motion_bits_per_frame": round(s.motion_bits_per_frame, 2),
                "framing_bits_per_frame": round(s.framing_bits_per_frame, 2)}


class Receiver:
    """Packets as they arrive -> frames shown; notices lost sync and asks for a key frame."""

    def __init__(self, animator, header: bytes, settings: CallSettings):
        self.settings = settings
        self.decoder = StreamDecoder(animator, header, size=settings.output_size)
        self.statuses: Counter = Counter()
        self.key_requests = 0
        self.losses = 0  # times sync was lost
        self.recoveries = 0  # times it came back (at a key frame)
        self.recovery_times: deque[float] = deque(maxlen=settings.window)
        self.lost_at: float | None = None
        self.last_request = -float("inf")
        self.last_problem = ""
        self.seconds = 0.0  # time spent decoding and rendering

    @property
    def synced(self) -> bool:
        return self.decoder.motion.synced

    def receive(self, packets: list[bytes | None], now: float) -> tuple[list, np.ndarray, bool]:
        """(decoded frames, their images uint8 (n, S, S, 3), whether to ask for a key frame) of the packets
        that arrived (None: lost on the way, unseen by the receiver)."""
        begin = time.monotonic()
        decoded, ask = [], False
        for packet in packets:
            if packet is None:
                continue
            report = self.decoder.motion.push(packet)
            self.statuses[report.status] += 1
            if report.status not in ("ok", "ended"):
                self.last_problem = report.message
            decoded += report.frames
            ask = self._sync(now) or ask
        images = self.decoder.render(decoded)
        self.seconds += time.monotonic() - begin
        return decoded, images, ask

    def _sync(self, now: float) -> bool:
        """Track losing and regaining sync; True when a key frame should be asked for now."""
        if self.synced:
            if self.lost_at is not None:
                self.recoveries += 1
                self.recovery_times.append(now - self.lost_at)
                self.lost_at = None
            return False
        if self.lost_at is None:
            self.lost_at, self.losses = now, self.losses + 1
        elif now - self.last_request < self.settings.key_retry:
            return False
        self.last_request = now
        self.key_requests += 1
        return True

    def stats(self) -> dict:
        times = list(self.recovery_times)
        return {"frames": self.decoder.frames_out, "key_frames": self.decoder.key_frames,
                "statuses": dict(self.statuses), "synced": self.synced, "key_requests": self.key_requests,
                "losses": self.losses, "recoveries": self.recoveries, "last_problem": self.last_problem,
                "recovery_ms_median": round(1000 * float(np.median(times)), 1) if times else None}


def _ms(values: list[float], q: float) -> float | None:
    return round(1000 * float(np.percentile(values, q)), 1) if values else None


class CallDirection:
    """One person's video to the other party: sender, lossy link and receiver, stepped together.

    Args:
        animator: the shared :class:`~facevid2vid.inference.Animator` (both ends hold the same model).
        settings: :class:`~facevid2vid.serve.settings.CallSettings` (validated here).
        name: how figures name this direction.
    """

    def __init__(self, animator, settings: CallSettings | None = None, name: str = "call"):
        self.settings = settings or CallSettings()
        self.settings.validate()
        self.name = name
        self.inbox = Inbox(self.settings.input_queue)
        self.sender = Sender(animator, self.settings)
        self.header = self.sender.encoder.header_bytes()  # travels with the call set-up
        self.link = LossyLink(self.settings.link)
        self.receiver = Receiver(animator, self.header, self.settings)
        self.started: float | None = None  # when the first packet was sent
        self.latencies: deque[float] = deque(maxlen=self.settings.window)
        self.shown: deque[float] = deque(maxlen=4 * self.settings.window)  # times frames were ready
        self.first_shown: float | None = None
        self.lock = threading.Lock()
        self.seq = 0
        self.history: deque[dict] = deque(maxlen=64)  # recent snapshots (figures shown are checkable)
        self.steps = 0
        self.busy = 0.0  # seconds spent in step()
        self.h264: H264Tile | None = None  # the comparison tile, while it is on
        self.h264_seconds = 0.0

    def set_compare(self, on: bool) -> None:
        """Switch the H.264 comparison tile on or off (off frees its encoder)."""
        if on and self.h264 is None:
            self.h264 = H264Tile(self.sender.size)
            self.sender.tap = self._compare
        elif not on:
            self.h264, self.sender.tap = None, None

    def _compare(self, crops: np.ndarray) -> None:
        """Code the crops with libx264 at the neural codec's bitrate and frame rate so far (from 2 s into the call)."""
        snap, tile = self.snapshot(), self.h264
        if tile is None or "kbps" not in snap or snap["elapsed"] < max(COMPARE_AFTER, 1e-3) \
                or not snap["sender"]["frames"]:
            return
        begin = time.monotonic()
        tile.push(crops, snap["kbps"]["total"], snap["sender"]["frames"] / snap["elapsed"])
        self.h264_seconds += time.monotonic() - begin

    def step(self, frames: list[CapturedFrame] | None = None) -> list[OutputFrame]:
        """Encode the frames (default: those waiting in the inbox), send, receive; the frames to show."""
        begin = time.monotonic()
        frames = self.inbox.take(self.settings.max_batch) if frames is None else frames
        packets = self.sender.encode(frames) if frames else []
        if packets and self.started is None:
            self.started = begin
        arrived = [self.link.send(p) for p in packets]
        decoded, images, ask = self.receiver.receive(arrived, time.monotonic())
        if ask:
            self.sender.encoder.request_key_frame()
        now = time.monotonic()
        out = []
        for frame, image in zip(decoded, images):
            latency = now - self.sender.times.get(frame.index, now)
            out.append(OutputFrame(image, frame.index, frame.is_key, latency))
            self.latencies.append(latency)
            self.shown.append(now)
        if out and self.first_shown is None:
            self.first_shown = begin  # the first frames took this step to make
        self.steps += 1
        self.busy += now - begin
        self._publish(now)
        return out

    def set_loss(self, loss: float) -> None:
        self.link.set_loss(loss)

    def _fps(self, now: float, span: float = 5.0) -> float:
        """Frames shown per second over the last ``span`` seconds (or since the first frame)."""
        if not self.shown:
            return 0.0
        duration = min(span, now - self.first_shown)
        recent = sum(1 for t in self.shown if t > now - span)
        return recent / duration if duration > 0 else 0.0

    def _publish(self, now: float) -> None:
        elapsed = now - self.started if self.started is not None else 0.0
        sender, link = self.sender.stats(), self.link.stats()
        total = sender["header_bytes"] + sender["key_bytes"] + sender["motion_bytes"]
        lat = list(self.latencies)
        tile = self.h264  # switched from the event loop's thread: read once

        def kbps(nbytes: int) -> float:
            return round(8 * nbytes / elapsed / 1000, 3) if elapsed > 0 else 0.0

        snap = {"name": self.name, "elapsed": round(elapsed, 3), "sender": sender, "link": link,
                "input": {"received": self.inbox.received, "dropped": self.inbox.dropped},
                "receiver": {**self.receiver.stats(), "fps": round(self._fps(now), 2),
                             "latency_ms_median": _ms(lat, 50), "latency_ms_p95": _ms(lat, 95)},
                "kbps": {"total": kbps(total), "key": kbps(sender["key_bytes"]),
                         "motion": kbps(sender["motion_bytes"])},
                "steps": self.steps, "busy_s": round(self.busy, 3), "stage_s": self._stages(),
                "h264": tile.stats(now) if tile is not None else None}
        with self.lock:
            self.seq += 1
            snap["seq"] = self.seq
            self.history.append(snap)

    def _stages(self) -> dict:
        """Seconds spent in each stage so far (tracking, encoding, decoding with rendering)."""
        sender = self.sender.seconds
        return {"track": round(sender["track"], 3), "encode": round(sender["encode"], 3),
                "decode": round(self.receiver.seconds, 3), "h264": round(self.h264_seconds, 3)}

    def snapshot(self) -> dict:
        """The latest figures (a copy safe to read from any thread)."""
        with self.lock:
            return dict(self.history[-1]) if self.history else {"name": self.name, "seq": 0}

    def find(self, seq: int) -> dict | None:
        """A recent snapshot by its number (to check a figure a page showed)."""
        with self.lock:
            return next((s for s in self.history if s["seq"] == seq), None)
