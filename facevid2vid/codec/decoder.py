"""Decoding .fv2v streams: packets -> motion parameters -> synthesized frames.

Two layers:

- :class:`MotionStreamDecoder` (no network): packets in, decoded frames out (the key
  frame image, or the quantised motion of a motion frame). It is the state machine of a
  receiver: in ``strict`` mode (files) any problem raises :class:`BitstreamError`; in
  live mode (:meth:`push`) a corrupt, missing or out-of-order packet is reported and
  skipped, and decoding resumes at the next key frame.
- :class:`StreamDecoder` adds the model: it checks that the stream was made for it,
  derives the source from each decoded key frame and renders the motion frames.

:func:`decode_stream` parses a file once, rendering as it goes; the file-level command
(``facevid2vid.pipeline.decode_file``) writes what it yields.
"""
from __future__ import annotations

import contextlib
from collections.abc import Iterator
from dataclasses import dataclass, field

import numpy as np
from facevid2vid.codec import bitstream as bs
from facevid2vid.codec.entropy import MotionEntropyCoder
from facevid2vid.codec.keyframe import decode_image
from facevid2vid.codec.layout import layout_for, model_layout
from facevid2vid.codec.quantize import Quantizer, QuantizerSteps
from facevid2vid.errors import BitstreamError, InputError

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
    """BitstreamError unless ``model`` is the one the stream was encoded for (family, hash, size, keypoints)."""
    from facevid2vid.checkpoint import model_family, model_fingerprint

    family = model_family(model)
    if header.family_name != family:
        raise BitstreamError(f"the stream is for a {header.family_name} model; this one is {family}")
    fingerprint = model_fingerprint(model)
    if header.model_hash != fingerprint:
        raise BitstreamError(f"the stream was made for another model (hash {header.model_hash.hex()}); "
                             f"this checkpoint's hash is {fingerprint.hex()}: decode with the encoder's checkpoint")
    try:
        keypoints = model_layout(model).num_keypoints
    except InputError as exc:
        raise BitstreamError(f"the stream cannot be decoded with this model: {exc}") from None
    size = model.cfg.image_size
    if (header.width, header.height) != (size, size) or header.num_keypoints != keypoints:
        raise BitstreamError(f"stream is {header.width}x{header.height} with {header.num_keypoints} keypoints; "
                             f"the model is {size}x{size} with {keypoints}")


class MotionStreamDecoder:
    """Packet-level receiver state machine (no network involved).

    Args:
        header: the stream's header.
        strict: raise BitstreamError on any problem (files) instead of reporting it.
    """

    def __init__(self, header: bs.StreamHeader, strict: bool = True):
        self.header = header
        self.strict = strict
        self.layout = layout_for(header.family_name, header.num_keypoints)  # the family's motion parameters
        self.quantizer = Quantizer(QuantizerSteps.from_tuple(header.steps, header.scale_step), self.layout)
        self.coder = MotionEntropyCoder(self.quantizer.limits, self.layout.groups())
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
    """Receiver: header, then packets, frames out. Owns the source of its current key frame.

    Args:
        animator: an :class:`~facevid2vid.inference.Animator` holding the model (may be shared).
        header: the stream header (bytes or parsed); refused if made for another model.
        size: side of the frames it gives (default: the header's output size, the encoded
            input's); frames are synthesized at the model's size and resized by
            :func:`~facevid2vid.video_io.resize_square` (bicubic when enlarging, area when shrinking).
    """

    def __init__(self, animator, header: bytes | bs.StreamHeader, size: int | None = None):
        self.animator = animator
        self.header = header if isinstance(header, bs.StreamHeader) else bs.parse_header(header)
        check_model(self.header, animator.model)
        width, height = self.header.output_size
        if size is None and width != height:
            raise BitstreamError(f"the stream's output size {width}x{height} is not square: pass a size")
        self.size = int(size or width)
        self.motion = MotionStreamDecoder(self.header, strict=False)
        self.source = None  # SourceEncoding of the last key frame
        self.frames_out = 0  # frames given so far
        self.key_frames = 0  # of which key frames

    def push(self, packet: bytes) -> tuple[PacketReport, np.ndarray]:
        """(report, frames uint8 (n, size, size, 3)) for one packet; n is 0 when it was skipped."""
        report = self.motion.push(packet)
        return report, self.render(report.frames)

    def render(self, frames: list[DecodedFrame]) -> np.ndarray:
        """Receiver output uint8 (n, size, size, 3): key frames as decoded, motion frames synthesized.

        Each key frame replaces this decoder's source.
        """
        from facevid2vid.video_io import to_tensor, to_uint8

        out: list[np.ndarray] = []  # each (size, size, 3)
        pending: list[np.ndarray] = []

        def flush():
            if pending:
                motion = self.motion.layout.from_array(np.stack(pending))
                # models may render larger than their input (LivePortrait: 2x); resized as key frames are
                out.extend(self._resize(to_uint8(self.animator.render(self.source, motion))))
                pending.clear()

        for frame in frames:
            if frame.is_key:
                flush()
                self.source = self.animator.encode_source(to_tensor(frame.key_image))
                out.extend(self._resize(frame.key_image[None]))
                self.key_frames += 1
            else:
                pending.append(frame.motion)
        flush()
        self.frames_out += len(out)
        return np.stack(out) if out else np.zeros((0, self.size, self.size, 3), dtype=np.uint8)

    def _resize(self, frames: np.ndarray) -> np.ndarray:
        from facevid2vid.video_io import resize_square

        if len(frames) == 0:
            return np.zeros((0, self.size, self.size, 3), dtype=np.uint8)
        return resize_square(frames, self.size)


# ---------------------------------------------------------------------------------------
# streams in files (a path or a binary file object)

RENDER_FRAMES = 64  # motion frames rendered together at most when decoding a file (bounds memory)


def _open(source):
    """A binary file object for a path, or the given file object itself (not closed by us)."""
    if hasattr(source, "read"):
        return contextlib.nullcontext(source)
    return open(source, "rb")


def _decoded(f, header: bs.StreamHeader) -> Iterator[DecodedFrame]:
    decoder = MotionStreamDecoder(header, strict=True)
    for packet in bs.read_packets(f, f.tell()):
        yield from decoder.decode_packet(packet)


def iter_decoded(source) -> Iterator[DecodedFrame]:
    """Every decoded frame of a stream, in order (no synthesis).

    Strict: any problem raises BitstreamError naming the byte or packet.
    """
    with _open(source) as f:
        yield from _decoded(f, bs.read_header(f))


def validate_file(source) -> tuple[bs.StreamHeader, int, int]:
    """Parse and decode everything but the synthesis: (header, frames, key frames)."""
    frames = keys = 0
    with _open(source) as f:
        header = bs.read_header(f)
        for frame in _decoded(f, header):
            frames += 1
            keys += frame.is_key
    if frames == 0:
        raise BitstreamError("stream holds no frames")
    return header, frames, keys


def decode_stream(source, animator, size: int | None = None) -> tuple[StreamDecoder, Iterator[np.ndarray]]:
    """(decoder, receiver frames uint8 (size, size, 3)) of a stream, parsed once as it is rendered.

    The header and model are checked before this returns; any later problem in the stream
    raises BitstreamError from the iterator (so a file writer discards its partial output).
    """
    own = not hasattr(source, "read")
    f = open(source, "rb") if own else source
    try:
        header = bs.read_header(f)
        decoder = StreamDecoder(animator, header, size)
    except BaseException:
        if own:
            f.close()
        raise
    return decoder, _render_stream(f, decoder, close=own)


def _render_stream(f, decoder: StreamDecoder, close: bool) -> Iterator[np.ndarray]:
    try:
        batch: list[DecodedFrame] = []
        count = 0
        for frame in _decoded(f, decoder.header):
            if frame.is_key or len(batch) >= RENDER_FRAMES:
                yield from decoder.render(batch)
                batch = []
            batch.append(frame)
            count += 1
        if count == 0:
            raise BitstreamError("stream holds no frames")
        yield from decoder.render(batch)
    finally:
        if close:
            f.close()
