"""File-level codec: ``encode`` (video -> .fv2v) and ``decode`` (.fv2v -> video), streamed.

The codec package takes and gives face crops; this module reads and crops the input video
(one face-tracker pass gives the steady box and each frame's face presence, which drives
the encoder's face-lost key frames), and writes the decoded frames at the size of the
encoded input's crops (recorded in the stream's header) or at ``size``.
"""
from __future__ import annotations

import time
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path

import torch
from tqdm import tqdm

from facevid2vid.codec.bitstream import MAX_SIZE
from facevid2vid.codec.decoder import decode_stream
from facevid2vid.codec.encoder import Encoder, EncoderSettings, EncodeStats
from facevid2vid.errors import InputError
from facevid2vid.outputs import atomic_open, check_distinct, check_output
from facevid2vid.pipeline.frames import FaceVideo
from facevid2vid.pipeline.synthesis import load_animator
from facevid2vid.validation import regular_file
from facevid2vid.video_io import write_video

CHUNK = 64  # frames per encode() call when encoding a file (bounds the memory of motion estimation)


@dataclass
class EncodeResult:
    output: Path
    stats: EncodeStats
    seconds: float


@dataclass
class DecodeResult:
    output: Path
    num_frames: int
    num_key_frames: int
    fps: float
    seconds: float


def encode_file(input: str | Path, output: str | Path, checkpoint: str | None = None,
                settings: EncoderSettings | None = None, crop: bool = True, device: str | None = None,
                animator=None, start: int = 0, max_frames: int | None = None,
                progress: bool = False) -> EncodeResult:
    """Encode a video file into ``output`` (.fv2v).

    With ``crop`` the face is tracked (one steady box, as ``animate`` does) and the tracker's
    per-frame presence tells the encoder when the face is lost; without, each frame's centred
    square is used. The header records the crop's side in input pixels (at most 1024), the
    size ``decode`` gives back.
    """
    t0 = time.perf_counter()
    output = check_output(output, "fv2v")
    check_distinct({"--output": output}, {"--input": input, "--checkpoint": checkpoint})
    settings = settings or EncoderSettings()
    settings.validate()
    animator = animator or load_animator(checkpoint, device)
    video = FaceVideo(input, animator.image_size, crop=crop, start=start, max_frames=max_frames,
                      what="video")
    frame_size = min(max(video.crop_size, 16), MAX_SIZE)  # the header holds 16..1024
    encoder = Encoder(animator, video.fps, settings, frame_size=frame_size)
    present = video.face_present
    with atomic_open(output, "wb") as f, tqdm(total=video.num_frames, desc="encode", unit="frame",
                                              disable=not progress, leave=False) as bar:
        f.write(encoder.header_bytes())
        done = 0
        for crops in video.batches(CHUNK, size=frame_size):
            flags = None if present is None else present[done:done + len(crops)]
            for packet in encoder.encode(crops, flags):
                f.write(packet)
            done += len(crops)
            bar.update(len(crops))
        for packet in encoder.finish():
            f.write(packet)
    return EncodeResult(output, encoder.stats, time.perf_counter() - t0)


def decode_file(input: str | Path, output: str | Path, checkpoint: str | None = None,
                device: str | None = None, animator=None, size: int | None = None) -> DecodeResult:
    """Decode ``input`` (.fv2v) into a video (or frame pattern) at ``output``.

    The stream is parsed once while it is rendered; a problem anywhere in it raises
    BitstreamError and leaves no output. Frames come out at the encoded input's size, or ``size``.
    """
    start = time.perf_counter()
    check_output(output, "video")
    check_distinct({"--output": output}, {"--input": input, "--checkpoint": checkpoint})
    if size is not None and not 16 <= size <= MAX_SIZE:
        raise InputError(f"--size must be in 16..{MAX_SIZE}, got {size}")
    path = regular_file(input, ".fv2v stream")  # a FIFO is refused, not read forever
    animator = animator or load_animator(checkpoint, device)
    with open(path, "rb") as f:
        decoder, frames = decode_stream(f, animator, size)
        header = decoder.header
        with torch.inference_mode():
            write_video(output, frames, Fraction(header.fps_num, header.fps_den))
    return DecodeResult(Path(output), decoder.frames_out, decoder.key_frames, header.fps,
                        time.perf_counter() - start)
