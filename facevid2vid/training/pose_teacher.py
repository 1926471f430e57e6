"""A pluggable network pose teacher: Hopenet-style (ResNet-50, 66-bin yaw/pitch/roll heads), no torchvision.

By default the head-pose loss uses the poses ``prepare`` stored in the index (dlib 68
landmarks + PnP on a generic 3D face, ``face.pose``). A user who has a Hopenet state dict
(keys ``conv1``, ``bn1``, ``layer1..4``, ``fc_yaw``, ``fc_pitch``, ``fc_roll``) can plug it in
with ``pose_teacher_weights``; it then runs on every training pair, frozen. Hopenet was
trained on 300W-LP, whose angle signs need not match this project's convention (positive yaw
turns the nose toward image-left, pitch down, roll clockwise): ``signs`` maps them.
"""
from __future__ import annotations

import re
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

from facevid2vid.errors import CheckpointError
from facevid2vid.models.pose_expression import Bottleneck
from facevid2vid.training.perceptual import IMAGENET_MEAN, IMAGENET_STD
from facevid2vid.weights_io import load_module, read_state_dict


class HopenetTeacher(nn.Module):
    """Image (B, 3, H, W) in [0, 1] -> (B, 3) (yaw, pitch, roll) degrees; frozen, eval mode."""

    def __init__(self, layers=(3, 4, 6, 3), num_bins: int = 66, input_size: int = 224,
                 signs=(1.0, 1.0, 1.0)):
        super().__init__()
        self.conv1 = nn.Conv2d(3, 64, 7, stride=2, padding=3, bias=False)
        self.bn1 = nn.BatchNorm2d(64)
        cin = 64
        for i, (n, width) in enumerate(zip(layers, (64, 128, 256, 512))):
            blocks = []
            for j in range(n):
                blocks.append(Bottleneck(cin, width, 4 * width, stride=2 if (j == 0 and i > 0) else 1))
                cin = width * 4
            setattr(self, f"layer{i + 1}", nn.Sequential(*blocks))
        self.fc_yaw = nn.Linear(cin, num_bins)
        self.fc_pitch = nn.Linear(cin, num_bins)
        self.fc_roll = nn.Linear(cin, num_bins)
        self.input_size = input_size
        self.register_buffer("mean", torch.tensor(IMAGENET_MEAN).view(1, 3, 1, 1), persistent=False)
        self.register_buffer("std", torch.tensor(IMAGENET_STD).view(1, 3, 1, 1), persistent=False)
        self.register_buffer("signs", torch.tensor(signs, dtype=torch.float32), persistent=False)
        self.requires_grad_(False)
        self.eval()

    def train(self, mode: bool = True):  # always frozen
        return super().train(False)

    @classmethod
    def from_file(cls, path: str | Path, signs=(1.0, 1.0, 1.0)) -> "HopenetTeacher":
        """Load a Hopenet state dict (``fc_finetune`` and ``fc`` keys, if present, are ignored)."""
        state = read_state_dict(path, "pose teacher weights")  # ``module.`` prefixes already removed
        state = {k: v for k, v in state.items() if not k.startswith(("fc_finetune.", "fc."))}
        state = {_torchvision_to_block_key(k): v for k, v in state.items()}
        if "fc_yaw.weight" not in state:
            raise CheckpointError(f"{path}: no 'fc_yaw.weight'; expected a Hopenet-style state dict")
        num_bins = state["fc_yaw.weight"].shape[0]
        layers = tuple(1 + max((int(k.split(".")[1]) for k in state if k.startswith(f"layer{i}.")), default=-1)
                       for i in range(1, 5))
        if min(layers) < 1:
            raise CheckpointError(f"{path}: missing ResNet stages (layer1..layer4)")
        net = cls(layers=layers, num_bins=num_bins, signs=signs)
        # BatchNorm step counters are bookkeeping that files from older PyTorch versions lack
        return load_module(net, state, path, "a Hopenet network", keep_own=("num_batches_tracked",))

    @torch.no_grad()
    def forward(self, image: torch.Tensor) -> torch.Tensor:
        x = F.interpolate(image.float(), size=(self.input_size, self.input_size), mode="bilinear",
                          align_corners=False, antialias=True)
        x = (x - self.mean) / self.std
        x = F.max_pool2d(F.relu(self.bn1(self.conv1(x))), 3, stride=2, padding=1)
        x = self.layer4(self.layer3(self.layer2(self.layer1(x))))
        x = torch.flatten(F.adaptive_avg_pool2d(x, 1), 1)
        idx = torch.arange(self.fc_yaw.out_features, device=x.device, dtype=x.dtype)
        angles = [(F.softmax(fc(x), dim=1) * idx).sum(1) * 3 - 99 for fc in (self.fc_yaw, self.fc_pitch, self.fc_roll)]
        return torch.stack(angles, dim=1) * self.signs  # (B, 3)


def _torchvision_to_block_key(key: str) -> str:
    """Hopenet/torchvision bottleneck names (bn1, downsample) -> the project's (norm1, shortcut)."""
    if not key.startswith("layer"):
        return key
    key = re.sub(r"\.bn(\d)\.", r".norm\1.", key)
    return key.replace(".downsample.", ".shortcut.")
