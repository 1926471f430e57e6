"""The call page's comparison tile: the same face crops coded by libx264 at the call's bitrate.

The sender's crops (what the neural codec codes) also go through a live libx264 encoder (PyAV,
``ultrafast``/``zerolatency``: no B-frames, no look-ahead, one frame in, one packet out) whose
target is the neural codec's own bitrate so far, and straight into an H.264 decoder; the latest
decoded frame is the tile. libx264's rate control spends bits per frame at its configured frame rate
(it ignores timestamps), so the encoder runs at the rate frames really arrive at (a busy call codes
fewer than the camera's). When the neural bitrate or that frame rate moves by more than ``retarget``,
the encoder is opened anew (its first frame is an IDR frame, and its bytes count).
libx264 does not always reach a rate this low: the figures report what it actually spent.
"""
from __future__ import annotations

import time
from fractions import Fraction

import numpy as np


MIN_KBPS = 1.0  # below this a rate is not a target libx264 takes


def _psnr(a: np.ndarray, b: np.ndarray) -> float:
    """PSNR (dB) of two uint8 images (H, W, 3), through the metrics' own definition."""
    import torch

    from facevid2vid.metrics.image import psnr

    def tensor(x):
        return torch.from_numpy(np.ascontiguousarray(x)).permute(2, 0, 1)[None].float() / 255

    return float(psnr(tensor(a), tensor(b))[0])


class H264Tile:
    """A live libx264 encoder and decoder for square RGB crops of ``size`` pixels."""

    def __init__(self, size: int, retarget: float = 0.25):
        self.size, self.retarget = int(size), float(retarget)
        self.encoder = self.decoder = None
        self.target_kbps: float | None = None
        self.fps: float | None = None  # the frame rate the encoder was opened at
        self.bytes = 0  # every H.264 packet since the tile was switched on
        self.frames = 0  # frames decoded
        self.restarts = 0  # encoder re-opened at a new rate
        self.latest: np.ndarray | None = None
        self.psnrs: list[float] = []  # of the decoded frames against their crops (recent ones)
        self.pending: list[np.ndarray] = []  # crops sent, not yet decoded (at most a few)
        self.started: float | None = None  # time.monotonic() of the first crop coded

    def _moved(self, kbps: float, fps: float) -> bool:
        return self.encoder is None or any(abs(new / old - 1) > self.retarget for new, old in
                                           ((max(MIN_KBPS, kbps), self.target_kbps), (fps, self.fps)))

    def _open(self, kbps: float, fps: float) -> None:
        import av

        rate, self.fps = max(MIN_KBPS, float(kbps)), float(fps)
        enc = av.CodecContext.create("libx264", "w")
        enc.width = enc.height = self.size
        enc.pix_fmt = "yuv420p"
        enc.time_base = Fraction(1, 1000)
        enc.framerate = Fraction(round(self.fps * 1000), 1000)
        enc.bit_rate = int(rate * 1000)
        kilobits = str(max(1, round(rate)))
        enc.options = {"preset": "ultrafast", "tune": "zerolatency", "vbv-maxrate": kilobits,
                       "vbv-bufsize": kilobits, "qpmax": "51", "keyint": "250"}
        enc.open()
        self.restarts += self.encoder is not None
        self.encoder, self.decoder = enc, av.CodecContext.create("h264", "r")
        self.target_kbps, self.pending, self.pts = rate, [], 0

    def push(self, crops: np.ndarray, kbps: float, fps: float) -> None:
        """Code the crops (uint8 (n, size, size, 3)) at ``kbps``, arriving at ``fps`` frames a second;
        the last decoded frame becomes the tile."""
        import av

        if crops.ndim != 4 or crops.shape[1:] != (self.size, self.size, 3):
            raise ValueError(f"expected crops of shape (n, {self.size}, {self.size}, 3), got {crops.shape}")
        if self.started is None:
            self.started = time.monotonic()
        if fps <= 0:
            raise ValueError(f"the frame rate must be positive, got {fps}")
        if self._moved(kbps, fps):
            self._open(kbps, fps)
        for crop in crops:
            frame = av.VideoFrame.from_ndarray(np.ascontiguousarray(crop), format="rgb24").reformat(format="yuv420p")
            frame.pts, frame.time_base = self.pts, Fraction(1, 1000)
            self.pts += round(1000 / self.fps)
            self.pending = (self.pending + [crop])[-8:]
            for packet in self.encoder.encode(frame):
                self.bytes += packet.size
                self._decode(packet)

    def _decode(self, packet) -> None:
        for frame in self.decoder.decode(packet):
            image = frame.to_ndarray(format="rgb24")
            if self.pending:
                self.psnrs = (self.psnrs + [_psnr(image, self.pending.pop(0))])[-100:]
            self.latest = image
            self.frames += 1

    def stats(self, now: float) -> dict:
        """Figures up to ``now`` (time.monotonic()); kbps over the wall time since the first crop, as the call's."""
        seconds = now - self.started if self.started is not None else 0.0
        return {"target_kbps": round(self.target_kbps or 0.0, 3), "frames": self.frames,
                "kbps": round(8 * self.bytes / seconds / 1000, 3) if seconds > 0 else 0.0,
                "restarts": self.restarts,
                "psnr_db": round(float(np.mean(self.psnrs)), 2) if self.psnrs else None}
