"""The file layer: read, crop, synthesize or code, write; streamed in bounded batches.

- :mod:`.frames`: photos and videos as model-sized face crops (:class:`FaceVideo`)
- :mod:`.synthesis`: ``animate``, ``reconstruct``, ``redirect`` on files
- :mod:`.codec`: ``encode`` and ``decode`` on files
"""
from facevid2vid.pipeline.codec import DecodeResult, EncodeResult, decode_file, encode_file
from facevid2vid.pipeline.frames import FaceVideo, load_driving_frames, load_source_image
from facevid2vid.pipeline.synthesis import (RunResult, animate_files, load_animator, reconstruct_files,
                                            redirect_files, redirect_frame)

__all__ = [
    "DecodeResult", "EncodeResult", "decode_file", "encode_file",
    "FaceVideo", "load_driving_frames", "load_source_image",
    "RunResult", "animate_files", "load_animator", "reconstruct_files", "redirect_files", "redirect_frame",
]
