"""LivePortrait (KwaiVGI/LivePortrait, MIT) as a model family: its released weights behind our interface.

Our own implementation of the networks (one module per network), loaded from checkpoints
converted by :func:`facevid2vid.convert.liveportrait.convert_liveportrait`.
"""
from .config import FAMILY, LivePortraitConfig, liveportrait_config, tiny_liveportrait_config
from .model import MODULES, LivePortrait

__all__ = ["FAMILY", "LivePortraitConfig", "LivePortrait", "MODULES", "liveportrait_config",
           "tiny_liveportrait_config"]
