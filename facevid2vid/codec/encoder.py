"""The sender: face frames in, .fv2v packets out.

The encoder runs its own copy of the receiver. After a key frame it holds exactly the
source the receiver will derive (from the *decoded* key frame), quantises each frame's
motion, predicts from the indices the receiver will have, and synthesizes the frame the
receiver will show. It sends a new key frame when that synthesis drifts too far from the
real frame (PSNR more than ``keyframe_threshold`` dB below what the model achieved on the
key frame itself), when the face is lost or found again, or at the maximum interval.

To keep the synthesis batched, it renders a run of frames speculatively and cuts the run
at the first frame that needs a key frame.

With ``EncoderSettings.smoothing`` enabled (``encode --smooth``), the estimated motion goes
through a causal One Euro filter (:mod:`facevid2vid.smoothing`) before it is quantised; the
receiver needs nothing new (the stream carries the smoothed motion).
"""
from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from fractions import Fraction

import numpy as np
import torch

from facevid2vid.codec import bitstream as bs
from facevid2vid.codec.entropy import MotionEntropyCoder
from facevid2vid.codec.keyframe import CODEC_IDS, decode_image, encode_image
from facevid2vid.codec.layout import MotionLayout, model_layout
from facevid2vid.codec.quantize import DEFAULT_QUALITY, Quantizer, QuantizerSteps
from facevid2vid.errors import InputError
from facevid2vid.metrics.image import psnr
from facevid2vid.smoothing import SmoothingSettings, motion_smoother

FACE_PERSISTENCE = 3  # consecutive frames before "face lost" / "face found" counts (detector flicker)


@dataclass
class EncoderSettings:
    """Knobs of the sender; only ``quality`` changes the header's quantiser steps."""

    quality: int = DEFAULT_QUALITY  # 1..100: key frame quality and motion step sizes
    keyframe_threshold: float = 4.0  # dB: allowed PSNR drop below the key frame's own synthesis
    max_keyframe_interval: float = 10.0  # seconds; 0 disables the periodic key frame
    # seconds after a key frame in which drift sends no new one (and is not checked): caps the rate of
    # drift key frames, each of which costs an intra encoding and a source encoding on both ends; 0: no cap
    min_keyframe_interval: float = 0.0
    keyframe_codec: str = "avif"  # "avif" or "webp"
    keyframe_quality: int | None = None  # codec quality of key frames; None: ``quality``
    hysteresis: float = 0.3  # in steps: keep the previous index while within 0.5 + this
    frames_per_packet: int = 1  # >1 groups motion frames (less framing, more latency)
    steps: QuantizerSteps | None = None  # explicit steps instead of those of ``quality``
    measure_quantization: bool = False  # also synthesize from unquantised motion (PSNR of quantisation)
    keep_reconstruction: bool = False  # keep the simulated receiver's frames and indices
    smoothing: SmoothingSettings = field(default_factory=SmoothingSettings)  # One Euro filter on the motion (off)
    # the sender synthesizes every n-th motion frame to check it for drift (1: every frame); n > 1 saves
    # generator passes (the live call's real-time preset) and finds drift up to n - 1 frames late
    drift_check_every: int = 1

    def validate(self) -> None:
        if not 1 <= self.quality <= 100:
            raise InputError(f"--quality must be in 1..100, got {self.quality}")
        if self.keyframe_quality is not None and not 1 <= self.keyframe_quality <= 100:
            raise InputError(f"key frame quality must be in 1..100, got {self.keyframe_quality}")
        if self.keyframe_codec not in CODEC_IDS:
            raise InputError(f"unknown key frame codec {self.keyframe_codec!r}: choose {', '.join(CODEC_IDS)}")
        if not self.keyframe_threshold > 0:
            raise InputError(f"--keyframe-threshold must be positive, got {self.keyframe_threshold}")
        if not self.max_keyframe_interval >= 0:
            raise InputError(f"--max-keyframe-interval must be >= 0, got {self.max_keyframe_interval}")
        if not self.min_keyframe_interval >= 0:
            raise InputError(f"--min-keyframe-interval must be >= 0, got {self.min_keyframe_interval}")
        if not 1 <= self.frames_per_packet <= bs.MAX_RUN:
            raise InputError(f"frames per packet must be in 1..{bs.MAX_RUN}, got {self.frames_per_packet}")
        if not self.hysteresis >= 0:
            raise InputError(f"hysteresis must be >= 0, got {self.hysteresis}")
        if not 1 <= self.drift_check_every <= 1000:
            raise InputError(f"drift check interval must be in 1..1000 frames, got {self.drift_check_every}")
        if self.drift_check_every > 1 and (self.keep_reconstruction or self.measure_quantization):
            raise InputError("keep_reconstruction and measure_quantization need a drift check on every frame")
        self.smoothing.validate()


@dataclass
class EncodeStats:
    """Where the bytes went, and how well the receiver's synthesis matched."""

    fps: float
    frames: int = 0
    key_frames: int = 0
    header_bytes: int = 0
    key_bytes: int = 0  # key packets, framing included
    key_image_bytes: int = 0  # of which the intra-coded images
    motion_payload_bytes: int = 0  # entropy-coded motion of motion frames
    motion_framing_bytes: int = 0  # type, index, length, CRC (and run counts) of motion packets
    end_bytes: int = 0
    key_reasons: Counter = field(default_factory=Counter)
    synthesis_psnr: list[float] = field(default_factory=list)  # receiver synthesis vs real, motion frames
    quantization_psnr: list[float] = field(default_factory=list)  # quantised vs unquantised synthesis

    @property
    def motion_frames(self) -> int:
        return self.frames - self.key_frames

    @property
    def total_bytes(self) -> int:
        return (self.header_bytes + self.key_bytes + self.motion_payload_bytes + self.motion_framing_bytes
                + self.end_bytes)

    @property
    def seconds(self) -> float:
        return self.frames / self.fps if self.fps else 0.0

    def kbps(self, nbytes: int | None = None) -> float:
        nbytes = self.total_bytes if nbytes is None else nbytes
        return 8 * nbytes / self.seconds / 1000 if self.seconds else 0.0

    @property
    def motion_bits_per_frame(self) -> float:
        """Entropy-coded motion per motion frame (the 60-bit target), framing excluded."""
        return 8 * self.motion_payload_bytes / max(1, self.motion_frames)

    @property
    def framing_bits_per_frame(self) -> float:
        return 8 * self.motion_framing_bytes / max(1, self.motion_frames)

    def summary(self) -> str:
        total = max(1, self.total_bytes)
        motion = self.motion_payload_bytes + self.motion_framing_bytes
        reasons = ", ".join(f"{k} {v}" for k, v in sorted(self.key_reasons.items()))
        lines = [
            f"frames: {self.frames} ({self.seconds:.1f} s at {self.fps:g} fps); key frames: {self.key_frames} "
            f"({reasons})",
            f"total: {self.total_bytes} bytes = {self.kbps():.2f} kbps",
            f"  key frames: {self.key_bytes} bytes ({100 * self.key_bytes / total:.1f}%, "
            f"{self.kbps(self.key_bytes):.2f} kbps; {self.key_image_bytes / max(1, self.key_frames):.0f} bytes "
            f"per image)",
            f"  motion:     {motion} bytes ({100 * motion / total:.1f}%, {self.kbps(motion):.2f} kbps): "
            f"{self.motion_bits_per_frame:.1f} bits per motion frame + {self.framing_bits_per_frame:.1f} bits of "
            f"packet framing",
            f"  header and end: {self.header_bytes + self.end_bytes} bytes",
        ]
        if self.synthesis_psnr:
            lines.append(f"receiver synthesis vs input: mean PSNR {np.mean(self.synthesis_psnr):.2f} dB "
                         f"over {len(self.synthesis_psnr)} motion frames")
        if self.quantization_psnr:
            q = np.asarray(self.quantization_psnr)
            lines.append(f"quantised vs unquantised synthesis: mean PSNR {np.mean(np.minimum(q, 100)):.2f} dB, "
                         f"worst {np.min(q):.2f} dB")
        return "\n".join(lines)


def fps_fraction(fps: float | Fraction) -> Fraction:
    rate = Fraction(fps).limit_denominator(1001)
    if rate <= 0:
        raise InputError(f"frame rate must be positive, got {fps}")
    return rate


def _stream_steps(settings: EncoderSettings, layout: MotionLayout) -> QuantizerSteps:
    """The quantizer steps of a stream: explicit ones or the family's at the quality; a scale step iff the
    motion has one."""
    with_scale = layout.uses_scale
    steps = settings.steps or layout.default_steps(settings.quality)
    if with_scale and steps.scale is None:
        steps = QuantizerSteps(*steps.as_tuple(), scale=layout.default_steps(settings.quality).scale)
    if not with_scale and steps.scale is not None:
        steps = QuantizerSteps(*steps.as_tuple())
    return steps


class Encoder:
    """Streaming sender: call :meth:`encode` with batches of face crops, then :meth:`finish`.

    It owns the source encoding of the receiver's current key frame, so several encoders (and
    decoders) can share one Animator. Any family with a :mod:`~facevid2vid.codec.layout` works
    (face-vid2vid, LivePortrait, FOMM, Monkey-Net); others raise InputError.

    Args:
        animator: an :class:`~facevid2vid.inference.Animator` with the model the receiver holds.
        fps: frame rate of the input.
        settings: :class:`EncoderSettings`.
        frame_size: side in pixels of the square face crops given to :meth:`encode` (default: the
            model's size); recorded in the header as the size the receiver shows. Crops of another
            size are resized to the model's by :func:`~facevid2vid.video_io.resize_square` (area
            averaging when shrinking, bicubic when enlarging).
    """

    def __init__(self, animator, fps: float | Fraction, settings: EncoderSettings | None = None,
                 frame_size: int | None = None):
        from facevid2vid.checkpoint import model_fingerprint

        self.settings = settings or EncoderSettings()
        self.settings.validate()
        self.animator = animator
        self.layout = model_layout(animator.model)  # InputError for families the codec cannot code
        self.size = animator.model.cfg.image_size
        self.frame_size = int(frame_size or self.size)
        self.num_keypoints = self.layout.num_keypoints
        rate = fps_fraction(fps)
        steps = _stream_steps(self.settings, self.layout)
        self.header = bs.StreamHeader(model_fingerprint(animator.model), self.size, self.size, rate.numerator,
                                      rate.denominator, self.num_keypoints, self.settings.quality, steps.as_tuple(),
                                      output_width=self.frame_size, output_height=self.frame_size,
                                      family=bs.FAMILY_IDS[self.layout.family], scale_step=steps.scale_step or 0.0)
        self.header.validate()
        self.source = None  # source encoding of the last key frame, as the receiver derives it
        # quantise with exactly the (float32) steps the receiver reads from the header
        self.quantizer = Quantizer(QuantizerSteps.from_tuple(self.header.steps, self.header.scale_step),
                                   self.layout, self.settings.hysteresis)
        self.coder = MotionEntropyCoder(self.quantizer.limits, self.layout.groups())
        # causal: each frame's motion is smoothed with the frames before it, across encode() calls
        self.smoother = motion_smoother(self.settings.smoothing, float(rate))
        self.codec = CODEC_IDS[self.settings.keyframe_codec]
        self.key_quality = self.settings.keyframe_quality or self.settings.quality
        interval = self.settings.max_keyframe_interval
        self.max_interval = max(1, round(interval * float(rate))) if interval > 0 else None
        self.min_interval = round(self.settings.min_keyframe_interval * float(rate))  # frames
        self.frame_index = 0
        self.last_key: int | None = None
        self.previous: np.ndarray | None = None  # receiver's last indices
        self.baseline_psnr = 0.0
        self.pending: list[np.ndarray] = []  # indices of motion frames not yet packed
        self.pending_start = 0
        self.face_state = True
        self.face_run = 0
        self.stats = EncodeStats(fps=float(rate), header_bytes=bs.HEADER_SIZE)
        self.reconstruction: list[np.ndarray] = []  # receiver frames uint8 (H, W, 3), if kept
        self.indices: list[np.ndarray] = []  # receiver motion indices per frame, if kept
        self.finished = False

    def header_bytes(self) -> bytes:
        return self.header.to_bytes()

    # -- decisions --------------------------------------------------------------------------

    def _face_events(self, present: np.ndarray | None, n: int) -> list[str | None]:
        """Per frame: "face-lost", "face-found" or None (debounced over FACE_PERSISTENCE frames)."""
        events: list[str | None] = [None] * n
        if present is None:
            return events
        for i, flag in enumerate(np.asarray(present, dtype=bool)):
            if flag != self.face_state:
                self.face_run += 1
                if self.face_run >= FACE_PERSISTENCE:
                    self.face_state = bool(flag)
                    self.face_run = 0
                    events[i] = "face-found" if flag else "face-lost"
            else:
                self.face_run = 0
        return events

    def _forced_reason(self, index: int, face_event: str | None) -> str | None:
        if self.last_key is None:
            return "first"
        if face_event:
            return face_event
        if self.max_interval is not None and index - self.last_key >= self.max_interval:
            return "interval"
        return None

    def _quiet(self, index: int) -> bool:
        """Frame ``index`` lies within ``min_keyframe_interval`` of the last key frame: no drift key frame."""
        return index - self.last_key < self.min_interval

    def _first_drift(self, quality: torch.Tensor) -> int:
        """Position in a speculated run of the first frame that needs a drift key frame (else its length)."""
        low = (quality < self.baseline_psnr - self.settings.keyframe_threshold).nonzero()[:, 0].tolist()
        return next((j for j in low if not self._quiet(self.frame_index + j)), len(quality))

    # -- packets ------------------------------------------------------------------------------

    def _flush(self) -> list[bytes]:
        if not self.pending:
            return []
        frames = np.stack(self.pending)
        coded = self.coder.encode(frames)
        if len(frames) == 1:
            packet = bs.encode_packet(bs.PACKET_MOTION, self.pending_start, coded)
        else:
            packet = bs.encode_packet(bs.PACKET_MOTION_RUN, self.pending_start,
                                      bs.motion_run_payload(len(frames), coded))
        self.stats.motion_payload_bytes += len(coded)
        self.stats.motion_framing_bytes += len(packet) - len(coded)
        self.pending = []
        return [packet]

    def _key_frame(self, frame: np.ndarray, values: np.ndarray, reason: str) -> list[bytes]:
        from facevid2vid.video_io import to_tensor

        packets = self._flush()
        image = encode_image(frame, self.key_quality, self.codec)
        decoded = decode_image(image, self.codec, self.size, self.size)  # what the receiver will have
        self.source = self.animator.encode_source(to_tensor(decoded))
        base = self.quantizer.quantize(values)
        self.coder.reset()
        motion = self.coder.encode(base[None])
        self.coder.reset(base)
        payload = bs.KeyPayload(self.codec, image, motion).to_bytes()
        if len(payload) > bs.MAX_PAYLOAD[bs.PACKET_KEY]:
            raise InputError(f"key frame of {len(payload)} bytes exceeds the format's limit: lower --quality")
        packet = bs.encode_packet(bs.PACKET_KEY, self.frame_index, payload)
        # how well the model reproduces the key frame itself: the reference for drift
        synth = self._render(self.quantizer.dequantize(base)[None])
        self.baseline_psnr = float(psnr(to_tensor(frame), synth)[0])
        self.previous = base
        self.last_key = self.frame_index
        self.stats.key_frames += 1
        self.stats.key_bytes += len(packet)
        self.stats.key_image_bytes += len(image)
        self.stats.key_reasons[reason] += 1
        if self.settings.keep_reconstruction:
            self.reconstruction.append(decoded)
            self.indices.append(base)
        self._advance(1)
        packets.append(packet)
        return packets

    def _advance(self, n: int) -> None:
        self.frame_index += n
        self.stats.frames += n
        if self.frame_index >= bs.MAX_FRAMES:
            raise InputError(f"the stream format holds at most {bs.MAX_FRAMES} frames")

    # -- public API ---------------------------------------------------------------------------

    def _model_frames(self, frames: np.ndarray) -> np.ndarray:
        """Face crops uint8 (N, F, F, 3), F = frame_size, resized to the model's (N, S, S, 3)."""
        from facevid2vid.video_io import resize_square

        frames = np.asarray(frames)
        f = self.frame_size
        if frames.ndim != 4 or frames.shape[1:] != (f, f, 3) or frames.dtype != np.uint8:
            raise InputError(f"frames must be uint8 (N, {f}, {f}, 3), got {frames.dtype} {frames.shape}")
        return resize_square(frames, self.size)

    @torch.inference_mode()
    def encode(self, frames: np.ndarray, face_present: np.ndarray | None = None) -> list[bytes]:
        """Packets for the next face crops uint8 (N, F, F, 3); ``face_present`` (N,) from the face tracker."""
        from facevid2vid.video_io import to_tensor

        if self.finished:
            raise RuntimeError("encode() after finish()")
        frames = self._model_frames(frames)
        n = len(frames)
        if n == 0:
            return []
        events = self._face_events(face_present, n)
        motion = self.animator.estimate_motion(to_tensor(frames))
        if self.smoother is not None:
            motion = self.smoother(motion)  # what is quantised and sent is the smoothed motion
        values = self.layout.to_array(motion)  # (N, P) float32
        packets: list[bytes] = []
        i = 0
        while i < n:
            reason = self._forced_reason(self.frame_index, events[i])
            if reason is None:
                indices, synth, quality = self._speculate(frames, values, events, i)
                keep = self._first_drift(quality)
                if keep:
                    every_frame = synth is not None and len(synth) == len(indices)
                    packets += self._accept(indices[:keep], synth[:keep] if every_frame else None, quality[:keep],
                                            values[i:i + keep])
                    i += keep
                if keep == len(indices):
                    continue
                reason = "drift"
            packets += self._key_frame(frames[i], values[i], reason)
            i += 1
        return packets

    def _speculate(self, frames: np.ndarray, values: np.ndarray, events: list, start: int):
        """Quantise and synthesize frames from ``start`` up to the next forced key frame (one batch).

        Returns indices int64 (n, P), the synthesized frames of the checked ones (every
        ``drift_check_every``-th frame outside the quiet time after a key frame, all of them when
        the reconstruction is kept or measured: (c, 3, S, S), or None) and the PSNR (n,) of each
        frame (``inf`` for the unchecked ones, which pass).
        """
        from facevid2vid.video_io import to_tensor

        run, previous = [], self.previous
        while start + len(run) < len(frames) and len(run) < self.animator.batch_size:
            j = start + len(run)
            if run and self._forced_reason(self.frame_index + len(run), events[j]):
                break
            previous = self.quantizer.quantize(values[j], previous)
            run.append(previous)
        indices = np.stack(run)
        every = self.settings.drift_check_every
        keep_all = self.settings.keep_reconstruction or self.settings.measure_quantization
        checked = [j for j in range(len(run)) if (self.frame_index + j) % every == 0
                   and (keep_all or not self._quiet(self.frame_index + j))]
        quality = torch.full((len(run),), float("inf"))  # unchecked frames pass
        synth = None
        if checked:
            synth = self._render(self.quantizer.dequantize(indices[checked]))  # (c, 3, S, S)
            quality[checked] = psnr(to_tensor(frames[[start + j for j in checked]]), synth).float()
        return indices, synth, quality

    def _render(self, values: np.ndarray) -> torch.Tensor:
        """The receiver's synthesis (n, 3, S, S) of motion values (n, P), at the model's input size S.

        Models that render larger (LivePortrait: 2S) are area-averaged down to S, so the drift
        PSNR compares like with like; the receiver itself shows the full-size render, resized.
        """
        motion = self.layout.from_array(values)
        synth = self.animator.render(self.source, motion)
        if synth.shape[-1] != self.size:
            synth = torch.nn.functional.interpolate(synth, size=(self.size, self.size), mode="area")
        return synth

    def _accept(self, indices: np.ndarray, synth: torch.Tensor | None, quality: torch.Tensor,
                values: np.ndarray) -> list[bytes]:
        """Commit motion frames the receiver will synthesize; packets for each full run."""
        from facevid2vid.video_io import to_uint8

        packets = []
        for k, row in enumerate(indices):
            if not self.pending:
                self.pending_start = self.frame_index + k
            self.pending.append(row)
            if len(self.pending) >= self.settings.frames_per_packet:
                packets += self._flush()
        self.previous = indices[-1]
        self.stats.synthesis_psnr += [q for q in quality.tolist() if q != float("inf")]
        if self.settings.measure_quantization:
            exact = self._render(values)
            self.stats.quantization_psnr += psnr(exact, synth).tolist()
        if self.settings.keep_reconstruction:
            self.reconstruction.extend(to_uint8(synth))
            self.indices.extend(indices)
        self._advance(len(indices))
        return packets

    def finish(self) -> list[bytes]:
        """The remaining motion packet and the end packet."""
        if self.finished:
            return []
        self.finished = True
        packets = self._flush()
        end = bs.encode_packet(bs.PACKET_END, self.frame_index, bs.end_payload(self.frame_index))
        self.stats.end_bytes += len(end)
        return packets + [end]
