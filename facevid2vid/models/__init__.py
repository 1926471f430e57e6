"""The face-vid2vid networks: F, L, H/Delta, M, G (in :class:`FaceVid2Vid`) and the discriminator D."""
from .discriminator import MultiScaleDiscriminator
from .facevid2vid import MODULES, FaceVid2Vid

__all__ = ["MODULES", "FaceVid2Vid", "MultiScaleDiscriminator"]
