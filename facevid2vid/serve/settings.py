"""Typed settings of the web app and the live call (no heavy imports: the CLI reads these)."""
from __future__ import annotations

from dataclasses import dataclass, field

from facevid2vid.errors import InputError

MB = 1 << 20


@dataclass
class UploadLimits:
    """What an upload may be, and how much the server keeps."""

    photo_bytes: int = 10 * MB
    video_bytes: int = 50 * MB
    video_seconds: float = 30.0  # longest driving video
    video_frames: int = 1500  # most frames of a driving video
    photos_kept: int = 16  # uploaded photos (and their cached sources) kept, least recently used dropped
    jobs_kept: int = 8  # finished animate jobs kept (their videos), oldest dropped
    jobs_queued: int = 4  # animate jobs waiting or running at once; more are refused

    def validate(self) -> None:
        for name in ("photo_bytes", "video_bytes", "video_frames", "photos_kept", "jobs_kept", "jobs_queued"):
            if getattr(self, name) < 1:
                raise InputError(f"upload limit {name} must be positive, got {getattr(self, name)}")
        if not self.video_seconds > 0:
            raise InputError(f"upload limit video_seconds must be positive, got {self.video_seconds}")


@dataclass
class LinkSettings:
    """The simulated network between a sender and its receiver."""

    loss: float = 0.0  # fraction of packets that do not arrive intact
    corrupt_share: float = 0.5  # of those, the share delivered with a damaged byte (the rest are dropped)
    seed: int | None = None  # random seed (None: a fresh one)

    def validate(self) -> None:
        if not 0.0 <= self.loss <= 0.5:
            raise InputError(f"packet loss must be within 0..0.5, got {self.loss}")
        if not 0.0 <= self.corrupt_share <= 1.0:
            raise InputError(f"corrupt share must be within 0..1, got {self.corrupt_share}")


@dataclass
class CallSettings:
    """One direction of a live call: camera frames in, the receiver's frames out."""

    fps: float = 25.0  # nominal frame rate written in the stream header
    quality: int = 50  # the encoder's quality (EncoderSettings.quality)
    output_size: int = 256  # side of the frames the receiver shows (the model's are resized)
    max_batch: int = 1  # camera frames encoded together at most (more: a little more fps, twice the latency)
    input_queue: int = 2  # camera frames waiting at most; older ones are dropped (a slow sender skips)
    detect_every: int = 5  # the face detector runs on every n-th frame (CausalTracker.every)
    # the sender synthesizes every n-th frame for its drift check (EncoderSettings): 5 gives the call 15-16
    # fps instead of 8-10 on 2 CPU cores (benchmarks/call.py, docs/call.md)
    drift_check_every: int = 5
    # drift sends at most one key frame per this many seconds (EncoderSettings.min_keyframe_interval): 0.5
    # gives the busier direction 12.5 instead of 9.1 fps at 2.9 dB less PSNR (benchmarks/call.py, docs/call.md)
    min_keyframe_interval: float = 0.5
    key_retry: float = 1.0  # seconds before the receiver asks again for a key frame that did not come (0: each packet)
    window: int = 100  # frames over which latency percentiles are taken
    link: LinkSettings = field(default_factory=LinkSettings)

    def validate(self) -> None:
        if not 1.0 <= self.fps <= 120.0:
            raise InputError(f"call fps must be within 1..120, got {self.fps}")
        if not 1 <= self.quality <= 100:
            raise InputError(f"call quality must be within 1..100, got {self.quality}")
        for name in ("output_size", "max_batch", "input_queue", "detect_every", "drift_check_every", "window"):
            if getattr(self, name) < 1:
                raise InputError(f"call setting {name} must be positive, got {getattr(self, name)}")
        if not self.min_keyframe_interval >= 0:
            raise InputError(f"call setting min_keyframe_interval must be >= 0, got {self.min_keyframe_interval}")
        if not self.key_retry >= 0:
            raise InputError(f"call setting key_retry must be >= 0, got {self.key_retry}")
        self.link.validate()


@dataclass
class ServeSettings:
    """``facevid2vid serve``: where to listen and which model to load."""

    host: str = "127.0.0.1"  # only this machine; 0.0.0.0 opens the server to the network
    port: int = 7860
    checkpoint: str | None = None  # default: the bundled model
    # the live call's model; default: ``checkpoint`` when one is named, else the bundled real-time model
    call_checkpoint: str | None = None
    device: str = "auto"
    limits: UploadLimits = field(default_factory=UploadLimits)
    call: CallSettings = field(default_factory=CallSettings)
    max_parties: int = 2  # people in one call room
    max_rooms: int = 4  # call rooms at once

    def validate(self) -> None:
        if not 0 <= self.port <= 65535:
            raise InputError(f"--port must be within 0..65535, got {self.port}")
        if self.max_parties < 1 or self.max_rooms < 1:
            raise InputError("max_parties and max_rooms must be positive")
        self.limits.validate()
        self.call.validate()

    @property
    def call_model(self) -> str | None:
        """The checkpoint the live call loads (None: the bundled model)."""
        from facevid2vid.checkpoint import realtime_checkpoint

        if self.call_checkpoint is not None or self.checkpoint is not None:
            return self.call_checkpoint or self.checkpoint
        path = realtime_checkpoint()
        return None if path is None else str(path)

    @property
    def public(self) -> bool:
        """Whether the server listens beyond this machine."""
        return self.host not in ("127.0.0.1", "localhost", "::1")
