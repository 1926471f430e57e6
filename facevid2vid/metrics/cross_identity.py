"""The cross-identity protocol: still photos of other people driven by a clip (relative motion).

Per source photo, over the driving frames: identity preservation (dlib distance of each
generated frame's face to the source's face) and motion accuracy (Pearson correlation of the
landmark + PnP yaw and pitch of the driving frames with those of the generated frames, and the
mean |difference| of their frame-to-frame changes). Frames where either has no face are counted.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from facevid2vid.errors import NoFaceError
from facevid2vid.metrics.face import FaceAnalyzer, FaceObservation, embedding_distance


@dataclass
class CrossIdentityRow:
    source: str
    frames: int
    frames_identity: int  # generated frames with a face embedding
    id_distance: float | None  # mean dlib L2, generated vs source
    frames_pose: int  # frames where driving and generated both have a pose
    yaw_correlation: float | None
    pitch_correlation: float | None
    yaw_change_error: float | None  # mean |dyaw_gen - dyaw_drv| between consecutive measured frames, degrees


def _correlation(a: list[float], b: list[float]) -> float | None:
    if len(a) < 3 or np.std(a) < 1e-6 or np.std(b) < 1e-6:
        return None
    return float(np.corrcoef(a, b)[0, 1])


def cross_identity_row(name: str, source: FaceObservation, driving: list[FaceObservation],
                       generated: list[FaceObservation]) -> CrossIdentityRow:
    """Statistics of one source photo (driving frame i drove generated frame i)."""
    if source.embedding is None:
        raise NoFaceError(f"no face found in the source photo {name}")
    ident = [embedding_distance(g.embedding, source.embedding) for g in generated if g.embedding is not None]
    pairs = [(d.pose, g.pose) for d, g in zip(driving, generated) if d.pose is not None and g.pose is not None]
    yaw_d, yaw_g = [p[0][0] for p in pairs], [p[1][0] for p in pairs]
    pitch_d, pitch_g = [p[0][1] for p in pairs], [p[1][1] for p in pairs]
    changes = [abs((yaw_g[i + 1] - yaw_g[i]) - (yaw_d[i + 1] - yaw_d[i])) for i in range(len(pairs) - 1)]
    return CrossIdentityRow(
        source=name, frames=len(generated), frames_identity=len(ident),
        id_distance=float(np.mean(ident)) if ident else None, frames_pose=len(pairs),
        yaw_correlation=_correlation(yaw_d, yaw_g), pitch_correlation=_correlation(pitch_d, pitch_g),
        yaw_change_error=float(np.mean(changes)) if changes else None)


def run_cross_identity(animator, frames: np.ndarray, sources: dict[str, np.ndarray], analyzer: FaceAnalyzer,
                       to_model, from_model, progress: bool = True) -> tuple[list[CrossIdentityRow], float]:
    """Each source driven by ``frames`` (uint8, evaluation size); returns the rows and synthesis seconds.

    ``to_model``/``from_model`` resize uint8 frames to the model's input and its output back.
    """
    import time

    from tqdm import tqdm

    driving = [analyzer(f) for f in tqdm(frames, desc="driving poses", unit="frame", disable=not progress,
                                         leave=False)]
    rows, seconds = [], 0.0
    for name, image in sources.items():
        t0 = time.perf_counter()
        out = from_model(animator.animate(animator.encode_source(to_model(image[None])), to_model(frames),
                                          mode="relative"))
        seconds += time.perf_counter() - t0
        generated = [analyzer(f) for f in out]
        rows.append(cross_identity_row(name, analyzer(image), driving, generated))
    return rows, seconds
