"""Head-pose conventions of converted networks, mapped onto ours at H's output.

Our :class:`HeadMotion` angles are degrees with ``R = Rz(roll) Ry(yaw) Rx(pitch)``
(``geometry.rotation_from_angles``). The open face-vid2vid reimplementation reads its three
66-bin heads as ``3 * E[bin] - 99`` degrees too, but turns them into a rotation its own way:

- "open-fv2v" (its demo.py since 2021-11-05): ``R = Rx(pitch) Ry(yaw) Rz(roll)``;
- "open-fv2v-beta" (before, when the beta checkpoint was trained): ``R = Rx(roll) Ry(pitch) Rz(yaw)``;

both with degrees turned into radians as ``a / 180 * 3.14``. Its outputs named "yaw" and
"roll" come from layers named ``fc_roll`` and ``fc_yaw``: the converter follows the outputs.

So that everything downstream (keypoints, free view, relative motion, the codec) keeps our
convention while the converted network sees exactly the rotation it was trained with, H builds
the reference's matrix from the reference's angles and reports the angles of that same matrix
in our convention (:func:`our_angles`): ``rotation_from_angles(*our_angles(...)) == R_ref`` to
float precision (for |our yaw| < 90 degrees).
"""
from __future__ import annotations

import torch

from ..geometry import _rot_x, _rot_y, _rot_z, angles_from_rotation

REFERENCE_PI = 3.14  # the reimplementation's degrees -> radians factor is 3.14 / 180


def reference_rotation(yaw: torch.Tensor, pitch: torch.Tensor, roll: torch.Tensor, convention: str) -> torch.Tensor:
    """The reimplementation's rotation (B, 3, 3) from its own angles in degrees (each (B,))."""
    to_rad = REFERENCE_PI / 180.0
    yaw, pitch, roll = yaw * to_rad, pitch * to_rad, roll * to_rad
    if convention == "open-fv2v":
        return _rot_x(pitch) @ _rot_y(yaw) @ _rot_z(roll)
    if convention == "open-fv2v-beta":
        return _rot_x(roll) @ _rot_y(pitch) @ _rot_z(yaw)
    raise ValueError(f"unknown angle convention {convention!r}")


def our_angles(yaw: torch.Tensor, pitch: torch.Tensor, roll: torch.Tensor,
               convention: str) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Reference angles (degrees, (B,)) -> (yaw, pitch, roll) in our convention, same rotation.

    Computed in float64 so that the round trip through our rotation stays within ~1e-7.
    """
    dtype = torch.promote_types(yaw.dtype, torch.float32)
    rotation = reference_rotation(yaw.double(), pitch.double(), roll.double(), convention)
    return tuple(a.to(dtype) for a in angles_from_rotation(rotation))
