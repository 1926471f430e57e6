"""X2Face (Wiles, Koepke, Zisserman, ECCV 2018) as a model family: our own implementation.

Two networks, one 2D sampling field each (bounded by tanh, in grid_sample's [-1, 1]
coordinates): the embedding network (a U-Net) samples the source into the "embedded face",
a pose-normalised face computed once per source; the driving network (an encoder-decoder
without skips) maps a driving frame to the driving vector, a (N, D) motion code, and decodes
it to the field that samples the embedded face into the output frame.

Exports: ``Config``, ``PRESETS`` (x2face-256: the paper's model; x2face-128: lite-128's cost
per frame, for CPU comparisons; x2face-tiny: tests), ``Model``, ``Objective``.
"""
from .config import PRESETS, X2FaceConfig, tiny_x2face_config, x2face_128_config, x2face_config
from .model import X2Face
from .objective import X2FaceObjective

Config = X2FaceConfig
Model = X2Face
Objective = X2FaceObjective

__all__ = ["Config", "Model", "Objective", "PRESETS", "X2Face", "X2FaceConfig", "X2FaceObjective",
           "tiny_x2face_config", "x2face_128_config", "x2face_config"]
