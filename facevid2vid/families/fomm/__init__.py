"""FOMM, the First Order Motion Model (Siarohin et al., NeurIPS 2019), as a model family.

2D keypoints with local affine Jacobians (:mod:`.kp_detector`), a dense motion network with an
occlusion map (:mod:`.dense_motion`), an occlusion-aware generator (:mod:`.generator`), the
reference demo's relative motion (:mod:`.motion`) and its training losses (:mod:`.objective`).
Our own implementation, written from the paper and the reference's architecture; converted
checkpoints (``facevid2vid convert --from fomm vox-cpk.pth.tar``, :mod:`facevid2vid.convert.fomm`)
load into it unchanged.
"""
from .config import FAMILY, PRESETS, FOMMConfig, fomm_128, fomm_256, fomm_tiny
from .model import FOMM
from .objective import FOMMObjective

Config = FOMMConfig
Model = FOMM
Objective = FOMMObjective

__all__ = ["FAMILY", "PRESETS", "Config", "Model", "Objective", "FOMM", "FOMMConfig", "FOMMObjective",
           "fomm_256", "fomm_128", "fomm_tiny"]
