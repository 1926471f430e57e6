"""LivePortrait: the released LivePortrait networks behind our synthesis interface.

Mapping between our :class:`~facevid2vid.structures.HeadMotion` and LivePortrait's numbers
(done here, at the model boundary, so the reference's outputs are reproduced exactly):

- angles: degrees, ``3 * E[bin] - 97.5`` (LivePortrait's offset); LivePortrait's
  ``get_rotation_matrix(pitch, yaw, roll)`` is ``(R_z(roll) R_y(yaw) R_x(pitch))^T`` applied to
  row vectors (``x_c @ R``), which is our ``R = rotation_from_angles(yaw, pitch, roll)`` applied
  to column vectors: the same angles, the same matrix, no sign change. The keypoint frame is the
  same as ours (x right, y down, z away from the camera).
- ``translation`` is LivePortrait's t (3); only t_x, t_y move keypoints (t_z is ignored, as there).
- ``delta`` is LivePortrait's expression ``exp`` (K, 3); ``scale`` (B,) is its scale s.
- keypoints: ``x = s (R x_c + delta) + [t_x, t_y, 0]`` with the source's canonical x_c.
- relative motion (:meth:`LivePortrait.relative_motion`, LivePortrait's default "pose-friendly"
  relative mode): ``R = R_s R_ref^T R_d``, ``delta = delta_s + delta_d - delta_ref``,
  ``s = s_s s_d / s_ref``, ``t = t_s + t_d - t_ref``; R goes back to angles (|yaw| < 90 degrees).
"""
from __future__ import annotations

import torch
from torch import nn

from facevid2vid.families.base import check_image
from facevid2vid.geometry import angles_from_rotation, rotation_from_angles, user_rotation
from facevid2vid.structures import HeadMotion, SourceEncoding, View

from .appearance import AppearanceFeatureExtractor
from .config import LivePortraitConfig
from .decoder import SPADEDecoder
from .motion_extractor import MotionExtractor, angles_from_bins
from .stitching import StitchingRetargeting
from .warping import WarpingModule, WarpingOutput

# the module table: checkpoint prefix -> attribute of LivePortrait (LivePortrait's letters)
MODULES = {"F": "appearance_feature_extractor", "M": "motion_extractor", "W": "warping_module",
           "G": "spade_generator", "S": "stitching_retargeting_module"}

# LivePortrait's absolute ("non-relative") mode takes these expression components from the
# driving frame and the rest from the source: keypoint -> the coordinates (0 x, 1 y, 2 z) taken.
DRIVING_EXPRESSION = {**{k: (0, 1, 2) for k in (1, 2, 6, 11, 12, 13, 14, 15, 16, 17, 18, 19, 20)},
                      3: (1,), 4: (1,), 5: (2,), 8: (2,), 9: (1, 2)}


def keypoints(canonical: torch.Tensor, rotation: torch.Tensor, delta: torch.Tensor, scale: torch.Tensor,
              translation: torch.Tensor) -> torch.Tensor:
    """``s (R x_c + delta) + [t_x, t_y, 0]``: canonical (B|1, K, 3), rotation (B, 3, 3), delta (B, K, 3),
    scale (B,), translation (B, 3) -> (B, K, 3)."""
    b = rotation.shape[0]
    rotated = canonical.expand(b, -1, -1) @ rotation.transpose(1, 2)  # row vectors: x_c @ R^T = (R x_c)^T
    kp = (rotated + delta) * scale.reshape(b, 1, 1)
    shift = torch.cat([translation[:, :2], translation.new_zeros(b, 1)], dim=1)
    return kp + shift.unsqueeze(1)


def broadcast_motion(motion: HeadMotion, n: int) -> HeadMotion:
    """A batch-1 motion repeated (as views) to batch n."""
    if motion.yaw.shape[0] == n:
        return motion
    if motion.yaw.shape[0] != 1:
        raise ValueError(f"motion batch {motion.yaw.shape[0]} does not match batch {n}")
    scale = None if motion.scale is None else motion.scale.expand(n)
    return HeadMotion(motion.yaw.expand(n), motion.pitch.expand(n), motion.roll.expand(n),
                      motion.translation.expand(n, -1), motion.delta.expand(n, -1, -1), scale=scale)


class LivePortrait(nn.Module):
    """F, M, W, G and S of LivePortrait; ``encode_source`` / ``estimate_motion`` / ``render`` as FaceVid2Vid.

    Renders are ``cfg.output_size`` (512) square from ``cfg.image_size`` (256) inputs.
    """

    family = "liveportrait"
    NETWORKS = MODULES  # checkpoint prefix -> attribute of each network (facevid2vid.complexity, checkpoints)

    def __init__(self, cfg: LivePortraitConfig):
        super().__init__()
        cfg.validate()
        self.cfg = cfg
        self.appearance_feature_extractor = AppearanceFeatureExtractor(cfg)
        self.motion_extractor = MotionExtractor(cfg)
        self.warping_module = WarpingModule(cfg)
        self.spade_generator = SPADEDecoder(cfg)
        self.stitching_retargeting_module = StitchingRetargeting(cfg)

    def _motion(self, image: torch.Tensor) -> tuple[HeadMotion, torch.Tensor]:
        """(HeadMotion with scale and logits, canonical keypoints (B, K, 3)) of images (B, 3, S, S)."""
        out = self.motion_extractor(image)
        offset = self.cfg.pose_offset
        motion = HeadMotion(yaw=angles_from_bins(out.yaw_logits, offset),
                            pitch=angles_from_bins(out.pitch_logits, offset),
                            roll=angles_from_bins(out.roll_logits, offset), translation=out.translation,
                            delta=out.expression, yaw_logits=out.yaw_logits, pitch_logits=out.pitch_logits,
                            roll_logits=out.roll_logits, scale=out.scale)
        return motion, out.kp

    def encode_source(self, image: torch.Tensor) -> SourceEncoding:
        """F and M on the source image(s) (B, 3, S, S), plus W's source-only part."""
        check_image(image, self.cfg, "source image")
        motion, canonical = self._motion(image)
        rotation = rotation_from_angles(motion.yaw, motion.pitch, motion.roll).to(canonical.dtype)
        kp = keypoints(canonical, rotation, motion.delta, motion.scale, motion.translation)
        features = self.appearance_feature_extractor(image)
        cache = self.warping_module.dense_motion.prepare_source(features, kp)
        return SourceEncoding(features=features, canonical_kp=canonical, motion=motion, kp=kp, rotation=rotation,
                              cache=cache)

    def estimate_motion(self, image: torch.Tensor) -> HeadMotion:
        """M on driving frames (N, 3, S, S): pose, translation, expression and scale."""
        check_image(image, self.cfg, "driving image")
        return self._motion(image)[0]

    def driving_keypoints(self, source: SourceEncoding, motion: HeadMotion, view: View | None = None,
                          stitching: bool | None = None) -> torch.Tensor:
        """x_d (N, K, 3) for ``motion`` (batch 1 or N) and ``view``, stitched when enabled."""
        view = view or View()
        n = max(source.batch_size, motion.yaw.shape[0], view.num_frames() or 1)
        motion = broadcast_motion(motion, n)
        if motion.scale is None:
            raise ValueError("LivePortrait motion needs a scale (HeadMotion.scale)")
        rotation = user_rotation(rotation_from_angles(motion.yaw, motion.pitch, motion.roll),
                                 yaw=view.yaw, pitch=view.pitch, roll=view.roll, frontalize=view.frontalize)
        kp = keypoints(source.canonical_kp, rotation, motion.delta, motion.scale, motion.translation)
        if view.translation is not None:
            kp = kp + torch.as_tensor(view.translation, dtype=kp.dtype, device=kp.device).view(-1, 1, 3)
        if self.cfg.stitching if stitching is None else stitching:
            kp = self.stitching_retargeting_module.stitch(source.kp, kp)
        return kp

    def synthesize(self, source: SourceEncoding, kp_driving: torch.Tensor) -> tuple[torch.Tensor, WarpingOutput]:
        """W and G: (image (N, 3, O, O), warping output) for driving keypoints (N, K, 3)."""
        n = kp_driving.shape[0]
        if source.batch_size not in (1, n):
            raise ValueError(f"source batch {source.batch_size} does not match driving batch {n}")
        warped = self.warping_module(source.features, source.kp, kp_driving, cache=source.cache)
        return self.spade_generator(warped.features), warped

    def render(self, source: SourceEncoding, motion: HeadMotion, view: View | None = None,
               stitching: bool | None = None) -> torch.Tensor:
        """Frames (N, 3, O, O) in [0, 1], O = ``cfg.output_size``: absolute ``motion`` and free view ``view``.

        Source, motion and per-frame view controls each have batch 1 or N (batch 1 broadcasts).
        ``stitching`` overrides ``cfg.stitching`` (the view translation is added before stitching).
        """
        kp_driving = self.driving_keypoints(source, motion, view, stitching)
        return self.synthesize(source, kp_driving)[0].float().clamp(0, 1)

    @staticmethod
    def relative_motion(motion: HeadMotion, reference: HeadMotion, source: HeadMotion) -> HeadMotion:
        """LivePortrait's relative motion of ``motion`` (N) against ``reference`` (1), applied to ``source`` (1)."""
        if any(m.scale is None for m in (motion, reference, source)):
            raise ValueError("LivePortrait motion needs a scale (HeadMotion.scale)")
        r_d = rotation_from_angles(motion.yaw, motion.pitch, motion.roll)
        r_ref = rotation_from_angles(reference.yaw, reference.pitch, reference.roll)
        r_s = rotation_from_angles(source.yaw, source.pitch, source.roll)
        yaw, pitch, roll = angles_from_rotation(r_s @ r_ref.transpose(1, 2) @ r_d)
        return HeadMotion(yaw, pitch, roll, source.translation + (motion.translation - reference.translation),
                          source.delta + (motion.delta - reference.delta),
                          scale=source.scale * (motion.scale / reference.scale))

    @staticmethod
    def absolute_motion(motion: HeadMotion, source: HeadMotion) -> HeadMotion:
        """LivePortrait's absolute mode: the driving pose and t, the source scale, and the expression
        components of :data:`DRIVING_EXPRESSION` from the driving frame (the rest from the source)."""
        n = motion.yaw.shape[0]
        take = torch.zeros(motion.delta.shape[1:], dtype=torch.bool, device=motion.delta.device)
        for k, axes in DRIVING_EXPRESSION.items():
            if k < take.shape[0]:
                take[k, list(axes)] = True
        delta = torch.where(take, motion.delta, source.delta.expand(n, -1, -1))
        return HeadMotion(motion.yaw, motion.pitch, motion.roll, motion.translation, delta,
                          scale=source.scale.expand(n))
