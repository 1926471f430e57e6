"""Decoding .fv2v streams: packets -> motion parameters -> synthesized frames.

Two layers:

- :class:`MotionStreamDecoder` (no network): packets in, decoded frames out (the key
  frame image, or the quantised motion of a motion frame). It is the state machine of a
  receiver: in ``strict`` mode (files) any problem raises :class:`BitstreamError`; in
  live mode (:meth:`push`) a corrupt, missing or out-of-order packet is reported and
  skipped, and decoding resumes at the next key frame.
- :class:`StreamDecoder` adds the model: it checks that the stream was made for it,
  derives the source from each decoded key frame and renders the motion frames.

:func:`decode_file` reads a file, validates all of it first (cheap: no synthesis), then
writes the video.
"""
from __future__ import annotations

import contextlib
import time
from fractions import Fraction
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

from facevid2vid.codec import bitstream as bs
from facevid2vid.codec.entropy import MotionEntropyCoder
from facevid2vid.codec.keyframe import decode_image
from facevid2vid.codec.quantize import Quantizer, QuantizerSteps, array_to_motion
from facevid2vid.errors import BitstreamError

# what a live decoder reports for each packet
STATUS_OK = "ok"
STATUS_CORRUPT = "corrupt"  # unparseable, CRC mismatch or undecodable: skipped, wait for a key frame
STATUS_MISSING = "missing"  # frames before this packet never arrived: wait for a key frame
STATUS_SKIPPED = "skipped"  # a motion packet while waiting for a key frame
STATUS_LATE = "late"  # a packet for a frame already decoded or given up (reordered or duplicated)
STATUS_ENDED = "ended"  # the end packet


@dataclass
class DecodedFrame:
    """One frame as the receiver has it before synthesis."""

    index: int
    is_key: bool
    indices: np.ndarray  # int64 (P,) quantised motion (of the key frame itself for key frames)
    motion: np.ndarray  # float32 (P,) dequantised motion
    key_image: np.ndarray | None = None  # uint8 (H, W, 3) for key frames


@dataclass
class PacketReport:
    """What happened to one packet pushed into a live decoder."""

    status: str
    message: str
    packet_number: int
    frame_index: int | None
    frames: list[DecodedFrame] = field(default_factory=list)


def check_model(header: bs.StreamHeader, model) -> None:
    """BitstreamError unless ``model`` is the one the stream was encoded for."""
    from facevid2vid.checkpoint import model_fingerprint

    fingerprint = model_fingerprint(model)
    if header.model_hash != fingerprint:
        raise BitstreamError(f"the stream was made for another model (hash {header.model_hash.hex()}); "
                             f"this checkpoint's hash is {fingerprint.hex()}: decode with the encoder's checkpoint")
    cfg = model.cfg
    if (header.width, header.height) != (cfg.image_size, cfg.image_size) or header.num_keypoints != cfg.num_keypoints:
        raise BitstreamError(f"stream is {header.width}x{header.height} with {header.num_keypoints} keypoints; "
                             f"the model is {cfg.image_size}x{cfg.image_size} with {cfg.num_keypoints}")


class MotionStreamDecoder:
    """Packet-level receiver state machine (no network involved).

    Args:
        header: the stream's header.
        strict: raise BitstreamError on any problem (files) instead of reporting it.
    """

    def __init__(self, header: bs.StreamHeader, strict: bool = True):
        self.header = header
        self.strict = strict
        self.quantizer = Quantizer(QuantizerSteps.from_tuple(header.steps), header.num_keypoints)
        self.coder = MotionEntropyCoder(self.quantizer.limits)
        self.next_frame = 0  # the frame index the next packet should start at
        self.synced = False  # a key frame has been decoded and nothing lost since
        self.ended = False
        self.declared_frames: int | None = None
        self.packets = 0

    # -- live use: whole packets as bytes -------------------------------------------------

    def push(self, data: bytes) -> PacketReport:
        """Decode one packet given as bytes (as a transport delivers it); never raises BitstreamError."""
        number = self.packets
        self.packets += 1
        try:
            packet, used = bs.parse_packet(data, 0, number)
            if used != len(data):
                raise BitstreamError(f"packet {number}: {len(data) - used} bytes after its CRC")
        except BitstreamError as exc:
            self.synced = False
            return PacketReport(STATUS_CORRUPT, f"{exc}; skipping until the next key frame", number, None)
        return self._handle(packet, raise_errors=False)

    # -- file use: parsed packets, errors raise ---------------------------------------------

    def decode_packet(self, packet: bs.Packet) -> list[DecodedFrame]:
        """Frames of one parsed packet; in strict mode any problem raises BitstreamError."""
        report = self._handle(packet, raise_errors=self.strict)
        return report.frames

    def _handle(self, packet: bs.Packet, raise_errors: bool) -> PacketReport:
        where = f"packet {packet.number} ({packet.name}, frame {packet.frame_index}) at byte {packet.offset}"

        def problem(status: str, what: str) -> PacketReport:
            if raise_errors:
                raise BitstreamError(f"{where}: {what}")
            return PacketReport(status, f"{where}: {what}", packet.number, packet.frame_index)

        if self.ended:
            return problem(STATUS_LATE, "packet after the end of the stream")
        if packet.type == bs.PACKET_END:
            return self._end(packet, problem)
        if packet.frame_index < self.next_frame:
            return problem(STATUS_LATE, f"frame already passed (expected frame {self.next_frame}): "
                                        f"reordered or duplicated packet, skipped")
        gap = None
        if packet.frame_index > self.next_frame and (self.synced or raise_errors):
            gap = f"frames {self.next_frame}..{packet.frame_index - 1} are missing"
            if raise_errors:
                raise BitstreamError(f"{where}: {gap}")
            self.synced = False
        self.next_frame = packet.frame_index
        if packet.type != bs.PACKET_KEY and not self.synced:
            if raise_errors:
                raise BitstreamError(f"{where}: motion before the first key frame")
            self.next_frame += self._count(packet)
            status, what = (STATUS_MISSING, gap) if gap else (STATUS_SKIPPED, "waiting for a key frame")
            return PacketReport(status, f"{where}: {what}; skipping until the next key frame", packet.number,
                                packet.frame_index)
        report = self._decode(packet, problem)
        if gap and report.status == STATUS_OK:
            report.status, report.message = STATUS_MISSING, f"{where}: {gap}; resumed at this key frame"
        return report

    @staticmethod
    def _count(packet: bs.Packet) -> int:
        try:
            return bs.parse_motion_packet(packet)[0]
        except BitstreamError:
            return 1

    def _end(self, packet: bs.Packet, problem) -> PacketReport:
        try:
            declared = bs.parse_end_packet(packet)
        except BitstreamError as exc:
            return problem(STATUS_CORRUPT, str(exc))
        if declared != packet.frame_index or (self.strict and declared != self.next_frame):
            return problem(STATUS_CORRUPT, f"end packet declares {declared} frames, {self.next_frame} were decoded")
        self.ended = True
        self.declared_frames = declared
        return PacketReport(STATUS_ENDED, "end of stream", packet.number, packet.frame_index)

    def _decode(self, packet: bs.Packet, problem) -> PacketReport:
        try:
            frames = self._decode_key(packet) if packet.type == bs.PACKET_KEY else self._decode_motion(packet)
        except BitstreamError as exc:
            self.synced = False
            self.next_frame = packet.frame_index + (1 if packet.type == bs.PACKET_KEY else self._count(packet))
            return problem(STATUS_CORRUPT, f"{exc}; skipping until the next key frame")
        self.next_frame = packet.frame_index + len(frames)
        return PacketReport(STATUS_OK, "", packet.number, packet.frame_index, frames)

    def _decode_key(self, packet: bs.Packet) -> list[DecodedFrame]:
        key = bs.KeyPayload.parse(packet)
        image = decode_image(key.image, key.codec, self.header.width, self.header.height)
        # the key frame's own motion is coded from zero with fresh models, then predicts what follows
        self.coder.reset()
        indices = self.coder.decode(key.motion, 1)[0]
        self.coder.reset(indices)
        self.synced = True
        return [DecodedFrame(packet.frame_index, True, indices, self.quantizer.dequantize(indices), image)]

    def _decode_motion(self, packet: bs.Packet) -> list[DecodedFrame]:
        count, data = bs.parse_motion_packet(packet)
        if packet.frame_index + count > bs.MAX_FRAMES:
            raise BitstreamError(f"motion run of {count} frames passes the frame limit")
        indices = self.coder.decode(data, count)
        motion = self.quantizer.dequantize(indices)
        return [DecodedFrame(packet.frame_index + i, False, indices[i], motion[i]) for i in range(count)]


class StreamDecoder:
    """Live receiver: header, then packets one at a time, frames out.

    Args:
        animator: an :class:`~facevid2vid.inference.Animator` holding the model.
        header: the stream header (bytes or parsed); refused if made for another model.
    """

    def __init__(self, animator, header: bytes | bs.StreamHeader):
        self.animator = animator
        self.header = header if isinstance(header, bs.StreamHeader) else bs.parse_header(header)
        check_model(self.header, animator.model)
        self.motion = MotionStreamDecoder(self.header, strict=False)

    def push(self, packet: bytes) -> tuple[PacketReport, np.ndarray]:
        """(report, frames uint8 (n, H, W, 3)) for one packet; n is 0 when it was skipped."""
        report = self.motion.push(packet)
        return report, render_frames(self.animator, report.frames, self.header.num_keypoints)


def render_frames(animator, frames: list[DecodedFrame], num_keypoints: int) -> np.ndarray:
    """Receiver output for decoded frames: key frames as decoded, motion frames synthesized.

    Sets the animator's source at each key frame. Returns uint8 (n, H, W, 3).
    """
    from facevid2vid.video_io import to_tensor, to_uint8

    size = animator.image_size
    out: list[np.ndarray] = []
    pending: list[np.ndarray] = []

    def flush():
        if pending:
            motion = array_to_motion(np.stack(pending), num_keypoints, animator.device)
            out.extend(to_uint8(animator.render(motion)))
            pending.clear()

    for frame in frames:
        if frame.is_key:
            flush()
            animator.set_source(to_tensor(frame.key_image))
            out.append(frame.key_image)
        else:
            pending.append(frame.motion)
    flush()
    return np.stack(out) if out else np.zeros((0, size, size, 3), dtype=np.uint8)


# ---------------------------------------------------------------------------------------
# files


def read_stream_header(stream) -> bs.StreamHeader:
    return bs.parse_header(stream.read(bs.HEADER_SIZE))


def _open(source):
    """A binary file object for a path, or the given file object itself (not closed by us)."""
    if hasattr(source, "read"):
        return contextlib.nullcontext(source)
    return open(source, "rb")


def iter_decoded(source) -> Iterator[DecodedFrame]:
    """Every decoded frame of a stream (a path or a binary file object), in order.

    Strict: any problem raises BitstreamError naming the byte or packet.
    """
    with _open(source) as f:
        header = read_stream_header(f)
        decoder = MotionStreamDecoder(header, strict=True)
        for packet in bs.read_packets(f):
            yield from decoder.decode_packet(packet)


def validate_file(source) -> tuple[bs.StreamHeader, int, int]:
    """Parse and decode everything but the synthesis: (header, frames, key frames)."""
    frames = keys = 0
    with _open(source) as f:
        start = f.tell()
        header = read_stream_header(f)
        f.seek(start)
        for frame in iter_decoded(f):
            frames += 1
            keys += frame.is_key
    if frames == 0:
        raise BitstreamError("stream holds no frames")
    return header, frames, keys


@dataclass
class DecodeResult:
    output: Path
    num_frames: int
    num_key_frames: int
    fps: float
    seconds: float


def decode_frames(path: str | Path, animator) -> Iterator[np.ndarray]:
    """Receiver frames uint8 (H, W, 3) of a file, rendered in batches between key frames."""
    with open(path, "rb") as f:
        header = read_stream_header(f)
    check_model(header, animator.model)
    batch: list[DecodedFrame] = []
    for frame in iter_decoded(path):
        if frame.is_key or len(batch) >= animator.batch_size:
            yield from render_frames(animator, batch, header.num_keypoints)
            batch = []
        batch.append(frame)
    yield from render_frames(animator, batch, header.num_keypoints)


def decode_file(input: str | Path, output: str | Path, checkpoint: str | None = None,
                device: str | None = None, animator=None) -> DecodeResult:
    """Decode ``input`` (.fv2v) into a video at ``output``; validates the whole stream first."""
    from facevid2vid.outputs import check_distinct, check_output
    from facevid2vid.video_io import write_video

    start = time.perf_counter()
    check_output(output, "video")
    check_distinct({"--output": output}, {"--input": input, "--checkpoint": checkpoint})
    from facevid2vid.validation import regular_file

    path = regular_file(input, ".fv2v stream")  # a FIFO is refused, not read forever
    with open(path, "rb") as f:
        header = read_stream_header(f)
    if animator is None:
        from facevid2vid.pipeline import load_animator

        animator = load_animator(checkpoint, device)
    check_model(header, animator.model)  # refuse another model's stream before anything else
    _, frames, keys = validate_file(path)
    with torch.inference_mode():
        write_video(output, decode_frames(path, animator), Fraction(header.fps_num, header.fps_den))
    return DecodeResult(Path(output), frames, keys, header.fps, time.perf_counter() - start)
