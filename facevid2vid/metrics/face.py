"""Face metrics between aligned frames: AKD, AED, identity distance to a source, head-pose error.

All of them rest on dlib (through ``facevid2vid.face``): the frontal HOG face
detector, the 68-point shape predictor and the 128-D ResNet face descriptor,
each loaded once. Per frame pair:

- AKD: mean over the 68 landmarks of the Euclidean distance (pixels, at the
  evaluated frame size) between reference and generated landmarks;
- AED: Euclidean distance between the two 128-D dlib embeddings;
- pose error: |yaw_ref - yaw_gen|, |pitch_ref - pitch_gen|, |roll_ref - roll_gen|
  in degrees, angles from landmarks + PnP on a generic 3D face (``face/pose.py``);
- source identity: Euclidean distance of the generated frame's embedding to the
  source image's (for cross-identity use).

Frames where either side has no detected face cannot be compared; they are
counted (``frames_no_face_*``) and reported, and averages run over the rest.
"""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from facevid2vid.errors import FaceVid2VidError, NoFaceError


@dataclass
class FaceObservation:
    """What dlib sees in one frame; all None when no face was found."""

    landmarks: np.ndarray | None = None  # (68, 2) pixels (x, y)
    embedding: np.ndarray | None = None  # (128,)
    pose: tuple[float, float, float] | None = None  # (yaw, pitch, roll) degrees

    @property
    def found(self) -> bool:
        return self.landmarks is not None


class FaceAnalyzer:
    """Landmarks, embedding and pose of the main face in a frame (dlib models load once)."""

    def __init__(self, embeddings: bool = True, poses: bool = True):
        from facevid2vid.face import embedding, landmarks, pose

        self._landmarks = landmarks.landmarks_68
        self._embedding = embedding.face_embedding if embeddings else None
        self._pose = pose.HeadPoseEstimator() if poses else None

    @property
    def computes_embeddings(self) -> bool:
        return self._embedding is not None

    def __call__(self, frame: np.ndarray) -> FaceObservation:
        """frame: uint8 (H, W, 3) RGB."""
        lm = self._landmarks(frame)
        if lm is None:
            return FaceObservation()
        lm = np.asarray(lm, dtype=np.float64)
        emb = None
        if self._embedding is not None:
            emb = self._embedding(frame, landmarks=lm)
            emb = None if emb is None else np.asarray(emb, dtype=np.float64)
        pose = None
        if self._pose is not None:
            h, w = frame.shape[:2]
            try:
                pose = tuple(float(a) for a in self._pose.from_landmarks(lm, (w, h)))
            except FaceVid2VidError:  # PnP found no solution: no pose for this frame
                pose = None
        return FaceObservation(lm, emb, pose)


def keypoint_distance(a: np.ndarray, b: np.ndarray) -> float:
    """Mean Euclidean distance between matching landmarks (68, 2), in pixels."""
    return float(np.linalg.norm(a - b, axis=1).mean())


def embedding_distance(a: np.ndarray, b: np.ndarray) -> float:
    """Euclidean distance between two face embeddings."""
    return float(np.linalg.norm(a - b))


def angle_difference(a: float, b: float) -> float:
    """|a - b| in degrees, wrapped into [0, 180]."""
    d = abs(a - b) % 360.0
    return min(d, 360.0 - d)


@dataclass
class FaceMetrics:
    akd: float | None  # pixels
    aed: float | None
    aed_source: float | None  # generated vs source identity, when a source is given
    pose_error_yaw: float | None  # degrees
    pose_error_pitch: float | None
    pose_error_roll: float | None
    pose_error: float | None  # mean of the three
    frames: int
    frames_compared: int  # both frames have a face
    frames_no_face_reference: int
    frames_no_face_generated: int
    frames_no_embedding: int  # a face was found but dlib gave no embedding (both sides present)
    frames_compared_source: int = 0  # generated frames with an embedding, compared to the source


def _mean(values: list[float]) -> float | None:
    return float(np.mean(values)) if values else None


@dataclass
class FaceMetricAccumulator:
    """Accumulates per-frame face comparisons batch by batch."""

    analyzer: FaceAnalyzer
    source_embedding: np.ndarray | None = None
    _akd: list[float] = field(default_factory=list)
    _aed: list[float] = field(default_factory=list)
    _src: list[float] = field(default_factory=list)
    _pose: list[tuple[float, float, float]] = field(default_factory=list)
    frames: int = 0
    no_face_reference: int = 0
    no_face_generated: int = 0
    no_embedding: int = 0

    def set_source(self, image: np.ndarray) -> None:
        """Embedding of the source identity; NoFaceError when dlib finds no face in it."""
        obs = self.analyzer(image)
        if obs.embedding is None:
            raise NoFaceError("no face found in the source image (needed for identity distance)")
        self.source_embedding = obs.embedding

    def add(self, reference: np.ndarray, generated: np.ndarray) -> None:
        """uint8 frames (N, H, W, 3) of both videos."""
        for ref, gen in zip(reference, generated):
            self.add_pair(self.analyzer(ref), self.analyzer(gen))

    def add_pair(self, ref: FaceObservation, gen: FaceObservation) -> None:
        self.frames += 1
        self.no_face_reference += not ref.found
        self.no_face_generated += not gen.found
        if self.source_embedding is not None and gen.embedding is not None:
            self._src.append(embedding_distance(gen.embedding, self.source_embedding))
        if not (ref.found and gen.found):
            return
        self._akd.append(keypoint_distance(ref.landmarks, gen.landmarks))
        if ref.embedding is not None and gen.embedding is not None:
            self._aed.append(embedding_distance(ref.embedding, gen.embedding))
        elif self.analyzer.computes_embeddings:
            self.no_embedding += 1
        if ref.pose is not None and gen.pose is not None:
            self._pose.append(tuple(angle_difference(a, b) for a, b in zip(ref.pose, gen.pose)))

    def result(self) -> FaceMetrics:
        pose = np.asarray(self._pose, dtype=np.float64).reshape(-1, 3)
        per_axis = [float(v) for v in pose.mean(0)] if len(pose) else [None, None, None]
        return FaceMetrics(
            akd=_mean(self._akd), aed=_mean(self._aed),
            aed_source=_mean(self._src) if self.source_embedding is not None else None,
            pose_error_yaw=per_axis[0], pose_error_pitch=per_axis[1], pose_error_roll=per_axis[2],
            pose_error=float(pose.mean()) if len(pose) else None,
            frames=self.frames, frames_compared=len(self._akd),
            frames_no_face_reference=self.no_face_reference, frames_no_face_generated=self.no_face_generated,
            frames_no_embedding=self.no_embedding, frames_compared_source=len(self._src),
        )
