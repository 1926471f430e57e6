"""Neural video-call codec: one key frame, then head pose and expression per frame.

The format is documented in docs/bitstream.md; rate and quality in docs/codec.md.

- :mod:`.bitstream`: header and packets (CRC32, bounded parsing)
- :mod:`.quantize`: per-parameter steps, integer indices
- :mod:`.entropy`: adaptive context models, constriction range coding
- :mod:`.keyframe`: intra coding of key frames (AVIF / WebP)
- :mod:`.encoder`, :mod:`.decoder`: sender and receiver
"""
from facevid2vid.codec.bitstream import Packet, StreamHeader, parse_header, parse_packet, read_packets
from facevid2vid.codec.decoder import (DecodedFrame, DecodeResult, MotionStreamDecoder, PacketReport,
                                       StreamDecoder, decode_file, iter_decoded, validate_file)
from facevid2vid.codec.encoder import EncodeResult, Encoder, EncoderSettings, EncodeStats, encode_file
from facevid2vid.codec.quantize import Quantizer, QuantizerSteps, steps_for_quality

__all__ = [
    "Packet", "StreamHeader", "parse_header", "parse_packet", "read_packets",
    "DecodedFrame", "DecodeResult", "MotionStreamDecoder", "PacketReport", "StreamDecoder", "decode_file",
    "iter_decoded", "validate_file",
    "EncodeResult", "Encoder", "EncoderSettings", "EncodeStats", "encode_file",
    "Quantizer", "QuantizerSteps", "steps_for_quality",
]
