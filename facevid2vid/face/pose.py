"""Head pose (yaw, pitch, roll) from 68 landmarks by PnP on a generic 3D face.

No pretrained head-pose network (Hopenet, 6DRepNet) is available offline, so pose is
measured geometrically: 14 rigid-ish landmarks (eye corners, brows, nose, mouth
corners, chin) are matched to an average face model with ``cv2.solvePnP``, with a
pinhole camera of focal length ~ image width.

The model is written in the project's frame (x right, y down, z away from the
camera) facing the camera at rest, so the rotation PnP returns is directly the head
rotation ``R = Rz(roll) Ry(yaw) Rx(pitch)`` of ``geometry.py`` and the angles have the
same signs the generator's head-pose estimator uses.
"""
from __future__ import annotations

import math

import cv2
import numpy as np

from facevid2vid.errors import InputError
from facevid2vid.face.landmarks import landmarks_68

# iBUG-68 landmark index -> average adult face point in mm: origin at the nose tip,
# x toward the image right (the subject's left), y down, z away from the camera.
# Values are rounded anthropometric means (biocular width ~92 mm, intercanthal ~32 mm,
# mouth width ~50 mm, nasion 48 mm above the tip, chin ~75 mm below it).
FACE_MODEL_3D: dict[int, tuple[float, float, float]] = {
    17: (-56.0, -52.0, 48.0),   # right brow, outer end (image left)
    26: (56.0, -52.0, 48.0),    # left brow, outer end
    27: (0.0, -48.0, 24.0),     # nasion (top of the nose bridge)
    30: (0.0, 0.0, 0.0),        # nose tip
    31: (-15.0, 6.0, 18.0),     # right nostril wing
    33: (0.0, 9.0, 14.0),       # subnasale (nose base)
    35: (15.0, 6.0, 18.0),      # left nostril wing
    36: (-46.0, -34.0, 42.0),   # right eye, outer corner
    39: (-16.0, -33.0, 32.0),   # right eye, inner corner
    42: (16.0, -33.0, 32.0),    # left eye, inner corner
    45: (46.0, -34.0, 42.0),    # left eye, outer corner
    48: (-25.0, 32.0, 30.0),    # right mouth corner
    54: (25.0, 32.0, 30.0),     # left mouth corner
    8: (0.0, 76.0, 30.0),       # chin (menton)
}
MODEL_INDICES = np.array(list(FACE_MODEL_3D), dtype=np.int64)
MODEL_POINTS = np.array(list(FACE_MODEL_3D.values()), dtype=np.float64)  # (14, 3)
# distance between the outer eye corners, to guess the depth for the PnP start
_EYE_SPAN_MM = float(MODEL_POINTS[list(FACE_MODEL_3D).index(45), 0] - MODEL_POINTS[list(FACE_MODEL_3D).index(36), 0])


def angles_from_matrix(r: np.ndarray) -> tuple[float, float, float]:
    """(yaw, pitch, roll) in degrees of R = Rz(roll) Ry(yaw) Rx(pitch); numpy twin of
    ``geometry.angles_from_rotation`` (same formulas, same convention)."""
    yaw = math.asin(float(np.clip(-r[2, 0], -1.0, 1.0)))
    pitch = math.atan2(r[2, 1], r[2, 2])
    roll = math.atan2(r[1, 0], r[0, 0])
    return math.degrees(yaw), math.degrees(pitch), math.degrees(roll)


def camera_matrix(image_size: tuple[int, int]) -> np.ndarray:
    """Pinhole intrinsics for a (w, h) image: focal length = width, principal point at the centre."""
    w, h = image_size
    f = float(w)
    return np.array([[f, 0.0, w / 2.0], [0.0, f, h / 2.0], [0.0, 0.0, 1.0]])


class HeadPoseEstimator:
    """Landmarks (or a frame) -> head pose (yaw, pitch, roll) in degrees, project convention."""

    def __init__(self, model_points: np.ndarray = MODEL_POINTS, indices: np.ndarray = MODEL_INDICES):
        self.model_points = np.asarray(model_points, dtype=np.float64)
        self.indices = np.asarray(indices, dtype=np.int64)

    def rotation_from_landmarks(self, landmarks: np.ndarray, image_size: tuple[int, int]) -> np.ndarray:
        """The head rotation (3, 3) mapping model to camera coordinates."""
        lm = np.asarray(landmarks, dtype=np.float64)
        if lm.shape != (68, 2):
            raise InputError(f"head pose needs (68, 2) landmarks, got {lm.shape}")
        pts = np.ascontiguousarray(lm[self.indices])  # (14, 2)
        cam = camera_matrix(image_size)
        # start from a frontal face at the distance its eye span suggests
        span = float(np.linalg.norm(lm[45] - lm[36])) or 1.0
        z = cam[0, 0] * _EYE_SPAN_MM / span
        nose = lm[30]
        t0 = np.array([(nose[0] - cam[0, 2]) * z / cam[0, 0], (nose[1] - cam[1, 2]) * z / cam[1, 1], z])
        ok, rvec, _ = cv2.solvePnP(self.model_points, pts, cam, None, rvec=np.zeros((3, 1)),
                                   tvec=t0.reshape(3, 1), useExtrinsicGuess=True, flags=cv2.SOLVEPNP_ITERATIVE)
        if not ok:
            raise InputError("head pose: solvePnP found no solution for these landmarks")
        rot, _ = cv2.Rodrigues(rvec)
        return rot

    def from_landmarks(self, landmarks: np.ndarray, image_size: tuple[int, int]) -> tuple[float, float, float]:
        """(yaw, pitch, roll) in degrees from (68, 2) landmarks of a (w, h) image."""
        return angles_from_matrix(self.rotation_from_landmarks(landmarks, image_size))

    def __call__(self, frame: np.ndarray) -> tuple[float, float, float] | None:
        """Pose of the largest face in a uint8 RGB frame, or None if no face is found."""
        lm = landmarks_68(frame)
        if lm is None:
            return None
        h, w = frame.shape[:2]
        return self.from_landmarks(lm, (w, h))


def project_model(rotation: np.ndarray, image_size: tuple[int, int] = (256, 256), distance: float = 500.0,
                  model_points: np.ndarray = MODEL_POINTS) -> np.ndarray:
    """Pixels (P, 2) of the model points turned by ``rotation`` (3, 3) at ``distance`` mm (for checks)."""
    cam_pts = np.asarray(model_points) @ np.asarray(rotation, dtype=np.float64).T + np.array([0.0, 0.0, distance])
    uvw = cam_pts @ camera_matrix(image_size).T  # (P, 3) homogeneous pixels
    return uvw[:, :2] / uvw[:, 2:3]
