"""The .fv2v container: a versioned header, then CRC-protected packets (see docs/bitstream.md).

Everything here is bytes in, bytes out. Parsing never trusts a length field: each one is
checked against a fixed limit before anything is read or allocated, and every failure
raises :class:`BitstreamError` naming the byte offset (and packet number) where it happened.
"""
from __future__ import annotations

import math
import struct
import zlib
from collections.abc import Iterator
from dataclasses import dataclass
from typing import BinaryIO

from facevid2vid.codec.layout import step_limits
from facevid2vid.codec.quantize import MAX_INDEX, SCALE_LIMIT
from facevid2vid.errors import BitstreamError

MAGIC = b"FV2V"
VERSION = 2  # 2 added the output frame size, the model family and its scale step; version 1 is still read

# model families (a fixed table: never renumber); the family fixes the motion's parameters (codec.layout)
FAMILY_FACEVID2VID = 0  # 6 + 3K: angles, translation, expression
FAMILY_LIVEPORTRAIT = 1  # 7 + 3K: ... and the keypoint scale
FAMILY_FOMM = 2  # 6K: per keypoint x, y and its Jacobian (row-major); steps tx, ty and expression
FAMILY_MONKEYNET = 3  # 2K: per keypoint x, y; steps tx and ty
FAMILY_NAMES = {FAMILY_FACEVID2VID: "facevid2vid", FAMILY_LIVEPORTRAIT: "liveportrait", FAMILY_FOMM: "fomm",
                FAMILY_MONKEYNET: "monkeynet"}
FAMILY_IDS = {name: fid for fid, name in FAMILY_NAMES.items()}
SCALED_FAMILIES = (FAMILY_LIVEPORTRAIT,)

# packet types (a fixed table: never renumber)
PACKET_KEY = 0x01  # intra-coded key frame plus the quantized motion of that frame
PACKET_MOTION = 0x02  # entropy-coded motion of one frame
PACKET_MOTION_RUN = 0x03  # entropy-coded motion of 2..MAX_RUN consecutive frames (count byte first)
PACKET_END = 0x0F  # end of stream: the number of frames, so truncation at a packet boundary is caught
PACKET_NAMES = {PACKET_KEY: "key", PACKET_MOTION: "motion", PACKET_MOTION_RUN: "motion-run", PACKET_END: "end"}

# limits (the decoder refuses anything larger before allocating it)
MAX_FRAMES = 1 << 24  # frame indices are below this (7.7 days at 25 fps)
MAX_RUN = 64  # frames in one motion-run packet
MAX_PAYLOAD = {
    PACKET_KEY: 4 << 20,  # a lossless 1024x1024 key frame still fits
    PACKET_MOTION: 4096,
    PACKET_MOTION_RUN: 64 << 10,
    PACKET_END: 8,
}
MAX_SIZE = 1024  # width and height
MAX_KEYPOINTS = 64
NUM_STEPS = 7  # yaw, pitch, roll, tx, ty, tz, expression

_HEADER_V1 = struct.Struct("<4sBB16sHHIIBBB7f")  # all fields before the CRC
_HEADER = struct.Struct("<4sBB16sHHIIBBB7fHHBf")  # version 2: + output width, height, family, scale step
HEADER_SIZE = _HEADER.size + 4
HEADER_SIZE_V1 = _HEADER_V1.size + 4
_CRC = struct.Struct("<I")


@dataclass(frozen=True)
class StreamHeader:
    """What a receiver needs before the first packet.

    ``steps`` are the quantizer step sizes (yaw, pitch, roll in degrees; tx, ty, tz and
    expression in normalised keypoint units), so the format does not depend on how an
    encoder maps ``quality`` to steps. The keypoint families use some of them
    (:mod:`facevid2vid.codec.layout`: FOMM's x, y and Jacobians the tx, ty and expression steps).
    """

    model_hash: bytes  # 16 bytes: checkpoint.model_fingerprint of the model both sides must hold
    width: int
    height: int
    fps_num: int
    fps_den: int
    num_keypoints: int
    quality: int
    steps: tuple[float, ...]  # NUM_STEPS float32 values
    expression_mode: int = 0  # 0: raw per-keypoint deltas (the only mode so far)
    flags: int = 0
    output_width: int = 0  # size of the encoded input's face crops (what decode writes); 0: width
    output_height: int = 0  # 0: height
    family: int = FAMILY_FACEVID2VID  # FAMILY_NAMES: which model family, so which motion parameters
    scale_step: float = 0.0  # float32 quantizer step of the keypoint scale; 0 for families without one

    def __post_init__(self):
        object.__setattr__(self, "output_width", self.output_width or self.width)
        object.__setattr__(self, "output_height", self.output_height or self.height)

    @property
    def output_size(self) -> tuple[int, int]:
        """(width, height) decoded frames are written at by default."""
        return self.output_width, self.output_height

    @property
    def fps(self) -> float:
        return self.fps_num / self.fps_den

    @property
    def family_name(self) -> str:
        """"facevid2vid", "liveportrait", "fomm" or "monkeynet"."""
        return FAMILY_NAMES[self.family]

    @property
    def has_scale(self) -> bool:
        """Whether each frame's motion ends with a keypoint scale (P = 7 + 3K)."""
        return self.family in SCALED_FAMILIES

    def to_bytes(self) -> bytes:
        self.validate()
        body = _HEADER.pack(MAGIC, VERSION, self.flags, self.model_hash, self.width, self.height,
                            self.fps_num, self.fps_den, self.num_keypoints, self.quality,
                            self.expression_mode, *self.steps, *self.output_size, self.family, self.scale_step)
        return body + _CRC.pack(zlib.crc32(body))

    def validate(self) -> None:
        """Raise BitstreamError (offset: the header field) if a field is out of range."""
        def bad(field, offset, what):
            raise BitstreamError(f"header field {field} at byte {offset}: {what}")

        if len(self.model_hash) != 16:
            bad("model_hash", 6, f"must be 16 bytes, got {len(self.model_hash)}")
        if self.flags != 0:
            bad("flags", 5, f"unknown flags 0x{self.flags:02x}")
        ow, oh = self.output_size
        for name, value, offset in (("width", self.width, 22), ("height", self.height, 24),
                                    ("output_width", ow, 65), ("output_height", oh, 67)):
            if not 16 <= value <= MAX_SIZE:
                bad(name, offset, f"{value} is outside 16..{MAX_SIZE}")
        if not 1 <= self.fps_num <= 1_000_000 or not 1 <= self.fps_den <= 1_000_000:
            bad("fps", 26, f"{self.fps_num}/{self.fps_den} is not a valid frame rate")
        if not 0.1 <= self.fps <= 1000:
            bad("fps", 26, f"{self.fps:g} is outside 0.1..1000 frames per second")
        if not 1 <= self.num_keypoints <= MAX_KEYPOINTS:
            bad("keypoints", 34, f"{self.num_keypoints} is outside 1..{MAX_KEYPOINTS}")
        if not 1 <= self.quality <= 100:
            bad("quality", 35, f"{self.quality} is outside 1..100")
        if self.expression_mode != 0:
            bad("expression_mode", 36, f"unknown mode {self.expression_mode}")
        self._validate_family(bad)
        if len(self.steps) != NUM_STEPS:
            bad("steps", 37, f"need {NUM_STEPS} step sizes, got {len(self.steps)}")
        for i, (step, limit) in enumerate(zip(self.steps, step_limits(self.family_name))):
            # NaN fails both comparisons
            if not (1e-6 <= step <= 100.0):
                bad("steps", 37 + 4 * i, f"step {i} = {step!r} is outside 1e-6..100")
            if math.ceil(limit / step) > MAX_INDEX:
                bad("steps", 37 + 4 * i, f"step {i} = {step!r} is too fine (more than {MAX_INDEX} levels)")


    def _validate_family(self, bad) -> None:
        if self.family not in FAMILY_NAMES:
            bad("family", 69, f"unknown model family {self.family}")
        if not self.has_scale:
            if self.scale_step != 0:
                bad("scale_step", 70, f"must be 0 for family {FAMILY_NAMES[self.family]}, got {self.scale_step!r}")
        elif not (1e-6 <= self.scale_step <= 100.0):
            bad("scale_step", 70, f"{self.scale_step!r} is outside 1e-6..100")
        elif math.ceil(SCALE_LIMIT / self.scale_step) > MAX_INDEX:
            bad("scale_step", 70, f"{self.scale_step!r} is too fine (more than {MAX_INDEX} levels)")


def header_size(version: int) -> int:
    """Bytes of a header of format ``version`` (1 or 2)."""
    return HEADER_SIZE_V1 if version == 1 else HEADER_SIZE


def parse_header(data: bytes) -> StreamHeader:
    """Header from the first bytes of a stream (HEADER_SIZE, or HEADER_SIZE_V1 for version 1)."""
    if len(data) < 5:
        raise BitstreamError(f"truncated header: {len(data)} bytes, need {HEADER_SIZE}")
    if data[:4] != MAGIC:
        raise BitstreamError(f"not a .fv2v stream: bytes 0-3 are {data[:4]!r}, expected {MAGIC!r}")
    if data[4] not in (1, VERSION):
        raise BitstreamError(f"unsupported .fv2v version {data[4]} at byte 4 (this decoder reads versions 1 and "
                             f"{VERSION})")
    layout = _HEADER_V1 if data[4] == 1 else _HEADER
    if len(data) < layout.size + 4:
        raise BitstreamError(f"truncated header: {len(data)} bytes, need {layout.size + 4}")
    body = data[:layout.size]
    (stored,) = _CRC.unpack_from(data, layout.size)
    if zlib.crc32(body) != stored:
        raise BitstreamError(f"header CRC mismatch at byte {layout.size} (corrupt header)")
    fields = layout.unpack(body)
    (_, _, flags, model_hash, width, height, fps_num, fps_den, keypoints, quality, expression_mode) = fields[:11]
    steps = fields[11:11 + NUM_STEPS]
    out_w, out_h, family, scale_step = fields[11 + NUM_STEPS:] or (width, height, FAMILY_FACEVID2VID, 0.0)
    header = StreamHeader(model_hash, width, height, fps_num, fps_den, keypoints, quality,
                          tuple(float(s) for s in steps), expression_mode, flags, out_w, out_h, family,
                          float(scale_step))
    header.validate()
    return header


def read_header(stream: BinaryIO) -> StreamHeader:
    """The header at the start of a binary file object (either version), leaving it at the first packet."""
    start = stream.read(5)
    rest = stream.read(header_size(start[4]) - 5) if len(start) == 5 else b""
    return parse_header(start + rest)


# ---------------------------------------------------------------------------
# varints (unsigned LEB128, canonical: no redundant trailing zero groups)

def encode_varint(value: int) -> bytes:
    if value < 0:
        raise ValueError("varints are unsigned")
    out = bytearray()
    while True:
        byte = value & 0x7F
        value >>= 7
        if value:
            out.append(byte | 0x80)
        else:
            out.append(byte)
            return bytes(out)


def decode_varint(data: bytes, offset: int, max_bytes: int, what: str) -> tuple[int, int]:
    """(value, next offset); at most ``max_bytes`` bytes, canonical form only."""
    value = 0
    for i in range(max_bytes):
        if offset + i >= len(data):
            raise BitstreamError(f"truncated {what} at byte {offset + i}")
        byte = data[offset + i]
        value |= (byte & 0x7F) << (7 * i)
        if not byte & 0x80:
            if byte == 0 and i > 0:
                raise BitstreamError(f"non-canonical {what} at byte {offset}")
            return value, offset + i + 1
    raise BitstreamError(f"{what} at byte {offset} is longer than {max_bytes} bytes")


# ---------------------------------------------------------------------------
# packets: type (1 byte) | frame index (varint) | payload length (varint) | payload | CRC32

_INDEX_BYTES = 4  # 2**28 > MAX_FRAMES
_LENGTH_BYTES = 4  # 2**28 > any MAX_PAYLOAD


@dataclass(frozen=True)
class Packet:
    type: int
    frame_index: int
    payload: bytes
    offset: int = 0  # byte offset of the packet in its stream (for messages)
    number: int = 0  # packet number in its stream, 0-based (for messages)

    @property
    def size(self) -> int:
        return len(encode_packet(self.type, self.frame_index, self.payload))

    @property
    def name(self) -> str:
        return PACKET_NAMES.get(self.type, f"type-{self.type}")


def encode_packet(ptype: int, frame_index: int, payload: bytes) -> bytes:
    if ptype not in MAX_PAYLOAD:
        raise ValueError(f"unknown packet type {ptype}")
    if not 0 <= frame_index < MAX_FRAMES:
        raise ValueError(f"frame index {frame_index} is outside 0..{MAX_FRAMES - 1}")
    if len(payload) > MAX_PAYLOAD[ptype]:
        raise ValueError(f"{PACKET_NAMES[ptype]} payload of {len(payload)} bytes exceeds {MAX_PAYLOAD[ptype]}")
    body = bytes([ptype]) + encode_varint(frame_index) + encode_varint(len(payload)) + payload
    return body + _CRC.pack(zlib.crc32(body))


def _where(offset: int, number: int) -> str:
    return f"packet {number} at byte {offset}"


def _parse_packet_head(data: bytes, offset: int, number: int, base: int) -> tuple[int, int, int, int]:
    """(type, frame index, payload length, payload position) of the packet at ``data[offset:]``.

    ``base`` is the stream offset of ``data[0]``; messages report stream offsets.
    """
    where = _where(base + offset, number)
    if offset >= len(data):
        raise BitstreamError(f"truncated: {where} is missing")
    ptype = data[offset]
    if ptype not in MAX_PAYLOAD:
        raise BitstreamError(f"{where}: unknown packet type 0x{ptype:02x}")
    try:
        index, pos = decode_varint(data, offset + 1, _INDEX_BYTES, "frame index")
        length, pos = decode_varint(data, pos, _LENGTH_BYTES, "payload length")
    except BitstreamError as exc:
        raise BitstreamError(f"{where}: {exc} (relative to the packet)") from None
    if index >= MAX_FRAMES:
        raise BitstreamError(f"{where}: frame index {index} exceeds the limit {MAX_FRAMES - 1}")
    if length > MAX_PAYLOAD[ptype]:
        raise BitstreamError(f"{where}: {PACKET_NAMES[ptype]} payload length {length} exceeds the limit "
                             f"{MAX_PAYLOAD[ptype]}")
    return ptype, index, length, pos


def parse_packet(data: bytes, offset: int = 0, number: int = 0, base: int = 0) -> tuple[Packet, int]:
    """One packet from ``data`` at ``offset``: (packet, offset after it). Checks the CRC.

    ``base`` is the stream offset of ``data[0]`` (for messages and ``Packet.offset``).
    """
    ptype, index, length, pos = _parse_packet_head(data, offset, number, base)
    end = pos + length
    if end + 4 > len(data):
        raise BitstreamError(f"truncated {_where(base + offset, number)}: needs {end + 4 - offset} bytes, "
                             f"{len(data) - offset} left")
    (stored,) = _CRC.unpack_from(data, end)
    if zlib.crc32(data[offset:end]) != stored:
        raise BitstreamError(f"{_where(base + offset, number)}: CRC mismatch "
                             f"(corrupt {PACKET_NAMES[ptype]} packet)")
    return Packet(ptype, index, bytes(data[pos:end]), base + offset, number), end + 4


def read_packets(stream: BinaryIO, offset: int = HEADER_SIZE) -> Iterator[Packet]:
    """Packets from a file object whose next byte is stream byte ``offset`` (bounded memory).

    Stops after the end packet; bytes after it are an error. Raises BitstreamError on
    truncation, unknown types, oversized lengths or CRC mismatches.
    """
    head_size = 1 + _INDEX_BYTES + _LENGTH_BYTES
    buffer = b""
    number = 0
    while True:
        if len(buffer) < head_size:
            buffer += stream.read(head_size - len(buffer))
        if not buffer:
            raise BitstreamError(f"truncated: the stream ends at byte {offset} before its end packet "
                                 f"(after {number} packets)")
        _, _, length, pos = _parse_packet_head(buffer, 0, number, offset)
        needed = pos + length + 4  # bounded by MAX_PAYLOAD: checked above
        if len(buffer) < needed:
            buffer += stream.read(needed - len(buffer))
        packet, used = parse_packet(buffer, 0, number, offset)
        buffer = buffer[used:]
        yield packet
        offset += used
        number += 1
        if packet.type == PACKET_END:
            if buffer or stream.read(1):
                raise BitstreamError(f"unexpected bytes after the end packet, at byte {offset}")
            return


# ---------------------------------------------------------------------------
# payload layouts

@dataclass(frozen=True)
class KeyPayload:
    """A key packet's payload: codec id (1 byte) | image length (varint) | image | motion."""

    codec: int
    image: bytes
    motion: bytes  # entropy-coded quantised motion of the key frame itself (prediction base)

    def to_bytes(self) -> bytes:
        return bytes([self.codec]) + encode_varint(len(self.image)) + self.image + self.motion

    @classmethod
    def parse(cls, packet: Packet) -> "KeyPayload":
        data = packet.payload
        where = _where(packet.offset, packet.number)
        if not data:
            raise BitstreamError(f"{where}: empty key frame payload")
        try:
            length, pos = decode_varint(data, 1, _LENGTH_BYTES, "image length")
        except BitstreamError as exc:
            raise BitstreamError(f"{where}: {exc} (relative to the payload)") from None
        if pos + length > len(data):
            raise BitstreamError(f"{where}: key frame image length {length} exceeds the payload "
                                 f"({len(data) - pos} bytes left)")
        return cls(data[0], data[pos:pos + length], data[pos + length:])


def motion_run_payload(count: int, motion: bytes) -> bytes:
    """A motion-run packet's payload: frame count (1 byte) | motion."""
    if not 2 <= count <= MAX_RUN:
        raise ValueError(f"a motion run has 2..{MAX_RUN} frames, got {count}")
    return bytes([count]) + motion


def parse_motion_packet(packet: Packet) -> tuple[int, bytes]:
    """(number of frames, coded motion) of a motion or motion-run packet."""
    if packet.type == PACKET_MOTION:
        return 1, packet.payload
    if not packet.payload or not 2 <= packet.payload[0] <= MAX_RUN:
        count = packet.payload[0] if packet.payload else "no"
        raise BitstreamError(f"{_where(packet.offset, packet.number)}: motion run of {count} frames "
                             f"(must be 2..{MAX_RUN})")
    return packet.payload[0], packet.payload[1:]


def end_payload(num_frames: int) -> bytes:
    return encode_varint(num_frames)


def parse_end_packet(packet: Packet) -> int:
    """Number of frames the stream declares in its end packet."""
    where = _where(packet.offset, packet.number)
    try:
        count, pos = decode_varint(packet.payload, 0, _INDEX_BYTES, "frame count")
    except BitstreamError as exc:
        raise BitstreamError(f"{where}: {exc} (relative to the payload)") from None
    if pos != len(packet.payload) or count > MAX_FRAMES:
        raise BitstreamError(f"{where}: malformed end packet")
    return count
