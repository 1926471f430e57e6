"""Keras InceptionV3 ImageNet features: layers ``conv2d_1`` .. ``mixed5``, from nsfwjs.

nsfwjs ships a Keras 2.2.4 InceptionV3 fine-tuned for its 5 classes, with ``mixed6`` onward
and a new dense head trained; every layer up to ``mixed5`` is marked ``trainable: false`` in
the saved config, so its weights were not fine-tuned (Keras' ImageNet kernels). Only those
layers are ported; the converter checks each one's flag, config and inputs (``conv2d_55``,
also frozen, only feeds ``mixed6`` and is left out).

Input scaling: [0, 1], as nsfwjs feeds it. The saved model has no preprocessing layer
(``input_1`` feeds ``conv2d_1``) and nsfwjs' JS divides pixels by 255 (and resizes to 299).
Keras trained the ImageNet weights on [-1, 1] (``preprocess_input`` mode "tf"), but the
stored BN moving statistics are those of [0, 1] inputs (evidently re-estimated while nsfwjs
trained on [0, 1] images). By linearity the mean of ``conv2d_1`` over a data set is
``sum(kernel) . mean colour``: ``batch_normalization_1``'s moving mean correlates 0.997 with it
for ImageNet's mean colour in [0, 1] and -0.07 in [-1, 1] (median error 0.20 vs 1.36 moving
std). So ``forward`` feeds the image unchanged (tests/test_perception_features.py checks it).

Keras details: BN epsilon 1e-3 without scale (``conv2d_bn``: ``scale=False``, so the BN
weight is 1); strided convs and max pools are "valid", stride-1 convs "same" (all kernels odd:
symmetric padding); the branch average pools are 3x3 stride 1 "same", and TF leaves the
padding out of the average (``count_include_pad=False``).

Taps (``TAPS``, Keras layer names): the last activation at each resolution inside the frozen
range: ``activation_3`` (conv2d_3, ~1/2, 64 ch), ``activation_5`` (conv2d_5, ~1/4, 192 ch),
``mixed2`` (~1/8, 288 ch) and ``mixed5`` (~1/16, 768 ch). "valid" layers shrink the maps: at
299 px they are 147, 71, 35 and 17 px. Keras requires at least 75 px for InceptionV3, and so
does ``forward`` (``min_size``; the truncated network would compute from 43 px).
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from facevid2vid.errors import CheckpointError
from facevid2vid.perception.keras import BN_EPS, batch_norm, conv_kernel
from facevid2vid.perception.tfjs import keras_layers, read_layers_model, take_layer

FOLDER = "package/dist/models/inception_v3"


class ConvBN(nn.Module):
    """Keras' ``conv2d_bn``: Conv2D (no bias) + BatchNormalization(scale=False) + ReLU."""

    def __init__(self, cin: int, cout: int, kernel, stride: int = 1, same: bool = True):
        super().__init__()
        kh, kw = (kernel, kernel) if isinstance(kernel, int) else kernel
        if same and stride != 1:
            raise ValueError("strided 'same' convs do not occur in InceptionV3")
        # stride 1, odd kernel: TF "same" pads (k - 1) / 2 on both sides
        self.conv = nn.Conv2d(cin, cout, (kh, kw), stride, (kh // 2, kw // 2) if same else 0, bias=False)
        self.bn = batch_norm(cout)
        self.same = same

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.relu(self.bn(self.conv(x)))


def _avg_pool() -> nn.AvgPool2d:
    return nn.AvgPool2d(3, 1, 1, count_include_pad=False)  # Keras 3x3/1 "same": TF averages real pixels only


def _max_pool() -> nn.MaxPool2d:
    return nn.MaxPool2d(3, 2)  # 3x3/2 "valid"


class Mixed(nn.Module):
    """An Inception block: branches (each a pool and/or a chain of ``ConvBN``) concatenated."""

    def __init__(self, *branches: nn.Sequential):
        super().__init__()
        self.branches = nn.ModuleList(branches)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.cat([b(x) for b in self.branches], 1)


def _seq(*layers) -> nn.Sequential:
    return nn.Sequential(*layers)


def block_a(cin: int, pool: int) -> Mixed:
    """mixed0..2 (35x35): 1x1 | 1x1, 5x5 | 1x1, 3x3, 3x3 | avg pool, 1x1."""
    return Mixed(_seq(ConvBN(cin, 64, 1)), _seq(ConvBN(cin, 48, 1), ConvBN(48, 64, 5)),
                 _seq(ConvBN(cin, 64, 1), ConvBN(64, 96, 3), ConvBN(96, 96, 3)),
                 _seq(_avg_pool(), ConvBN(cin, pool, 1)))


def block_b(cin: int) -> Mixed:
    """mixed3 (35 -> 17): 3x3/2 | 1x1, 3x3, 3x3/2 | max pool."""
    return Mixed(_seq(ConvBN(cin, 384, 3, 2, same=False)),
                 _seq(ConvBN(cin, 64, 1), ConvBN(64, 96, 3), ConvBN(96, 96, 3, 2, same=False)),
                 _seq(_max_pool()))


def block_c(cin: int, c7: int) -> Mixed:
    """mixed4..5 (17x17): 1x1 | 1x1, 1x7, 7x1 | 1x1, 7x1, 1x7, 7x1, 1x7 | avg pool, 1x1."""
    return Mixed(_seq(ConvBN(cin, 192, 1)),
                 _seq(ConvBN(cin, c7, 1), ConvBN(c7, c7, (1, 7)), ConvBN(c7, 192, (7, 1))),
                 _seq(ConvBN(cin, c7, 1), ConvBN(c7, c7, (7, 1)), ConvBN(c7, c7, (1, 7)),
                      ConvBN(c7, c7, (7, 1)), ConvBN(c7, 192, (1, 7))),
                 _seq(_avg_pool(), ConvBN(cin, 192, 1)))


class InceptionV3Features(nn.Module):
    """RGB (B, 3, H, W) in [0, 1], H, W >= 75 -> feature maps at ``TAPS``."""

    TAPS = ("activation_3", "activation_5", "mixed2", "mixed5")
    CHANNELS = (64, 192, 288, 768)
    min_size = 75

    def __init__(self):
        super().__init__()
        # module order = Keras layer order: the i-th ConvBN is conv2d_<i>, the j-th pool its j-th
        self.stem1 = _seq(ConvBN(3, 32, 3, 2, same=False), ConvBN(32, 32, 3, same=False), ConvBN(32, 64, 3))
        self.stem2 = _seq(_max_pool(), ConvBN(64, 80, 1, same=False), ConvBN(80, 192, 3, same=False))
        self.pool = _max_pool()
        self.mixed = nn.ModuleList([block_a(192, 32), block_a(256, 64), block_a(288, 64), block_b(288),
                                    block_c(768, 128), block_c(768, 160)])  # mixed0..mixed5

    def body(self, x: torch.Tensor) -> list[torch.Tensor]:
        """The network on an already normalised (B, 3, H, W) tensor (here: the image itself)."""
        if min(x.shape[-2:]) < self.min_size:
            raise ValueError(f"InceptionV3Features needs images of at least {self.min_size} px "
                             f"(its 'valid' convs and pools shrink them), got {tuple(x.shape[-2:])}")
        a3 = self.stem1(x)
        a5 = self.stem2(a3)
        x = self.pool(a5)
        feats = [a3, a5]
        for i, block in enumerate(self.mixed):
            x = block(x)
            if i in (2, 5):
                feats.append(x)
        return feats

    def forward(self, image: torch.Tensor) -> list[torch.Tensor]:
        return self.body(image)  # [0, 1] as nsfwjs feeds it: see the module docstring


class _Walk:
    """Matches the module, in order, with the Keras graph, checking every layer and its inputs."""

    def __init__(self, layers: dict, weights: dict):
        self.layers, self.weights = layers, weights
        self.state: dict[str, torch.Tensor] = {}
        self.count = {"conv2d": 0, "average_pooling2d": 0, "max_pooling2d": 0}

    def _next(self, kind: str) -> str:
        self.count[kind] += 1
        return f"{kind}_{self.count[kind]}"

    def take(self, name: str, class_name: str, source, **expect) -> str:
        layer = take_layer(self.layers, name, class_name, **expect)
        if layer["inbound"] != (source if isinstance(source, list) else [source]):
            raise CheckpointError(f"Keras layer {name} is fed by {layer['inbound']}, expected {source}")
        return name

    def conv(self, unit: ConvBN, key: str, source: str) -> str:
        """conv2d_k -> batch_normalization_k -> activation_k; fills ``unit``'s weights."""
        conv = self._next("conv2d")
        k = conv.split("_")[1]
        c = unit.conv
        self.take(conv, "Conv2D", source, filters=c.out_channels, kernel_size=c.kernel_size, strides=c.stride,
                   padding="same" if unit.same else "valid", use_bias=False, activation="linear",
                   dilation_rate=(1, 1))
        bn = self.take(f"batch_normalization_{k}", "BatchNormalization", conv, epsilon=BN_EPS, center=True,
                        scale=False)
        out = self.take(f"activation_{k}", "Activation", bn, activation="relu")
        w = self.weights
        self.state[key + ".conv.weight"] = conv_kernel(w[conv + "/kernel"])
        self.state[key + ".bn.weight"] = torch.ones(c.out_channels)  # scale=False
        self.state[key + ".bn.bias"] = torch.from_numpy(w[bn + "/beta"]).float()
        self.state[key + ".bn.running_mean"] = torch.from_numpy(w[bn + "/moving_mean"]).float()
        self.state[key + ".bn.running_var"] = torch.from_numpy(w[bn + "/moving_variance"]).float()
        self.state[key + ".bn.num_batches_tracked"] = torch.zeros((), dtype=torch.long)
        return out

    def pool(self, module: nn.Module, source: str) -> str:
        if isinstance(module, nn.AvgPool2d):
            return self.take(self._next("average_pooling2d"), "AveragePooling2D", source, pool_size=(3, 3),
                              strides=(1, 1), padding="same")
        return self.take(self._next("max_pooling2d"), "MaxPooling2D", source, pool_size=(3, 3),
                          strides=(2, 2), padding="valid")

    def seq(self, seq: nn.Sequential, key: str, source: str) -> str:
        for j, m in enumerate(seq):
            source = self.conv(m, f"{key}.{j}", source) if isinstance(m, ConvBN) else self.pool(m, source)
        return source


def convert(read) -> dict[str, torch.Tensor]:
    """nsfwjs' InceptionV3 layers model -> state dict of ``InceptionV3Features`` (frozen layers only)."""
    config, weights = read_layers_model(read, FOLDER)
    walk = _Walk(keras_layers(config), weights)
    net = InceptionV3Features()
    source = walk.seq(net.stem1, "stem1", "input_1")
    source = walk.seq(net.stem2, "stem2", source)
    source = walk.pool(net.pool, source)
    for i, block in enumerate(net.mixed):
        outs = [walk.seq(b, f"mixed.{i}.branches.{j}", source) for j, b in enumerate(block.branches)]
        source = walk.take(f"mixed{i}", "Concatenate", outs, axis=3)
    return walk.state
