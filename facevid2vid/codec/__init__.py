"""Neural video-call codec: one key frame, then the motion (head pose and expression, or keypoints) per frame.

The format is documented in docs/bitstream.md; rate and quality in docs/codec.md.

- :mod:`.bitstream`: header and packets (CRC32, bounded parsing)
- :mod:`.layout`: each model family's motion as the coded parameter vector (face-vid2vid,
  LivePortrait, FOMM, Monkey-Net)
- :mod:`.quantize`: per-parameter steps, integer indices
- :mod:`.entropy`: adaptive context models, constriction range coding
- :mod:`.keyframe`: intra coding of key frames (AVIF / WebP)
- :mod:`.encoder`, :mod:`.decoder`: sender and receiver; they take and give face crops and
  never touch files (reading, cropping and writing videos is ``facevid2vid.pipeline``'s)
"""
from facevid2vid.codec.bitstream import Packet, StreamHeader, parse_header, parse_packet, read_packets
from facevid2vid.codec.decoder import (DecodedFrame, MotionStreamDecoder, PacketReport, StreamDecoder,
                                       decode_stream, iter_decoded, validate_file)
from facevid2vid.codec.encoder import Encoder, EncoderSettings, EncodeStats
from facevid2vid.codec.quantize import Quantizer, QuantizerSteps, steps_for_quality

__all__ = [
    "Packet", "StreamHeader", "parse_header", "parse_packet", "read_packets",
    "DecodedFrame", "MotionStreamDecoder", "PacketReport", "StreamDecoder", "decode_stream", "iter_decoded",
    "validate_file",
    "Encoder", "EncoderSettings", "EncodeStats",
    "Quantizer", "QuantizerSteps", "steps_for_quality",
]
