"""Keras MobileNetV2 (alpha 1.0) ImageNet features: layers ``Conv1`` .. ``block_10``, from nsfwjs.

nsfwjs ships a Keras 2.2.4 MobileNetV2 fine-tuned for its 5 classes, with ``block_11`` onward
and a new dense head trained; every layer up to ``block_10_project_BN`` is marked
``trainable: false`` in the saved config, so its weights were not fine-tuned (Keras' ImageNet
kernels). Only those layers are ported; the converter checks each one's flag, config and inputs.

Input scaling: [0, 1], as nsfwjs feeds it. The saved model has no preprocessing layer
(``input_1`` feeds ``Conv1_pad``) and nsfwjs' JS divides pixels by 255. Keras trained the
ImageNet weights on [-1, 1] (``preprocess_input`` mode "tf"), but the stored BN moving
statistics are those of [0, 1] inputs (evidently re-estimated while nsfwjs trained on [0, 1]
images; with batch statistics a conv + BN does not see an affine change of its input, the
moving averages do). By linearity the mean of ``Conv1`` over a data set is about
``sum(kernel) . mean colour``: ``bn_Conv1``'s moving mean correlates 0.998 with it for
ImageNet's mean colour in [0, 1] and -0.73 in [-1, 1] (median error 0.15 vs 1.0 moving std).
Feeding [-1, 1] would shift the stem channels by about one standard deviation, so ``forward``
feeds the image unchanged (tests/test_perception_features.py checks the statistic).

Padding follows the saved graph: each stride-2 depthwise conv is a ``ZeroPadding2D((0, 1),
(0, 1))`` then a "valid" conv (TF "same" for even sizes; for odd sizes this graph pads
bottom/right only, and so does the port); stride-1 3x3 "same" pads 1 on every side.

Taps (``TAPS``, Keras layer names): the last activation at each resolution inside the frozen
range: ``block_1_expand_relu`` (1/2, 96 ch), ``block_3_expand_relu`` (1/4, 144 ch),
``block_6_expand_relu`` (1/8, 192 ch) and the block_10 output ``block_10_project_BN`` (1/16,
96 ch, linear like every block output).
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from facevid2vid.errors import CheckpointError
from facevid2vid.perception.keras import BN_EPS, batch_norm, conv_kernel, depthwise_kernel
from facevid2vid.perception.tfjs import keras_layers, read_layers_model, take_layer

FOLDER = "package/dist/models/mobilenet_v2"
# (expansion t, output channels, stride) of expanded_conv (block 0) .. block_10
BLOCKS = ((1, 16, 1), (6, 24, 2), (6, 24, 1), (6, 32, 2), (6, 32, 1), (6, 32, 1),
          (6, 64, 2), (6, 64, 1), (6, 64, 1), (6, 64, 1), (6, 96, 1))
TAP_BLOCKS = (1, 3, 6)  # blocks whose expand activation is tapped (then the last block's output)


class ConvBN(nn.Module):
    """Conv2D (no bias) + BatchNormalization (+ ReLU6); stride 2 pads bottom/right by 1 first."""

    def __init__(self, cin: int, cout: int, kernel: int, stride: int = 1, groups: int = 1, relu: bool = True):
        super().__init__()
        pad = kernel // 2 if stride == 1 else 0
        self.conv = nn.Conv2d(cin, cout, kernel, stride, pad, groups=groups, bias=False)
        self.bn = batch_norm(cout)
        self.relu = relu

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.conv.stride[0] == 2:
            x = F.pad(x, (0, 1, 0, 1))  # ZeroPadding2D(((0, 1), (0, 1)))
        x = self.bn(self.conv(x))
        return F.relu6(x) if self.relu else x


class InvertedResidual(nn.Module):
    """1x1 expand (t > 1) -> 3x3 depthwise -> 1x1 linear project, + input when shapes allow."""

    def __init__(self, cin: int, t: int, cout: int, stride: int):
        super().__init__()
        hidden = cin * t
        self.expand = ConvBN(cin, hidden, 1) if t != 1 else None
        self.depthwise = ConvBN(hidden, hidden, 3, stride, groups=hidden)
        self.project = ConvBN(hidden, cout, 1, relu=False)
        self.residual = stride == 1 and cin == cout

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(block output, expand activation)."""
        hidden = self.expand(x) if self.expand is not None else x
        out = self.project(self.depthwise(hidden))
        return (x + out if self.residual else out), hidden


class MobileNetV2Features(nn.Module):
    """RGB (B, 3, H, W) in [0, 1] -> feature maps at ``TAPS`` (strides 2, 4, 8, 16)."""

    TAPS = ("block_1_expand_relu", "block_3_expand_relu", "block_6_expand_relu", "block_10_project_BN")
    CHANNELS = (96, 144, 192, 96)
    min_size = 16  # four stride-2 stages: floor(H / 16) >= 1

    def __init__(self):
        super().__init__()
        self.conv1 = ConvBN(3, 32, 3, 2)
        blocks, cin = [], 32
        for t, cout, stride in BLOCKS:
            blocks.append(InvertedResidual(cin, t, cout, stride))
            cin = cout
        self.blocks = nn.ModuleList(blocks)

    def body(self, x: torch.Tensor) -> list[torch.Tensor]:
        """The network on an already normalised (B, 3, H, W) tensor (here: the image itself)."""
        if min(x.shape[-2:]) < self.min_size:
            raise ValueError(f"MobileNetV2Features needs images of at least {self.min_size} px, "
                             f"got {tuple(x.shape[-2:])}")
        feats = []
        x = self.conv1(x)
        for i, block in enumerate(self.blocks):
            x, hidden = block(x)
            if i in TAP_BLOCKS:
                feats.append(hidden)
        feats.append(x)
        return feats

    def forward(self, image: torch.Tensor) -> list[torch.Tensor]:
        return self.body(image)  # [0, 1] as nsfwjs feeds it: see the module docstring


def _fed_by(layers, name: str, source: str) -> None:
    if layers[name]["inbound"] != [source]:
        raise CheckpointError(f"Keras layer {name} is fed by {layers[name]['inbound']}, expected {source}")


def _take_conv_bn(layers, weights, state, key: str, unit: ConvBN, conv: str, bn: str, relu: str | None,
                  source: str) -> str:
    """Check the Keras chain ``source`` -> conv -> BN (-> ReLU6), fill ``unit``'s weights under
    ``key``; return the chain's output layer name."""
    stride, k = unit.conv.stride[0], unit.conv.kernel_size[0]
    if stride == 2:
        pad = conv.replace("_depthwise", "") + "_pad"  # Conv1_pad, block_N_pad
        take_layer(layers, pad, "ZeroPadding2D", padding=[[0, 1], [0, 1]])
        _fed_by(layers, pad, source)
        source = pad
    common = {"kernel_size": (k, k), "strides": (stride, stride), "padding": "valid" if stride == 2 else "same",
              "use_bias": False, "dilation_rate": (1, 1), "activation": "linear"}
    if unit.conv.groups > 1:
        take_layer(layers, conv, "DepthwiseConv2D", depth_multiplier=1, **common)
        state[key + ".conv.weight"] = depthwise_kernel(weights[conv + "/depthwise_kernel"])
    else:
        take_layer(layers, conv, "Conv2D", filters=unit.conv.out_channels, **common)
        state[key + ".conv.weight"] = conv_kernel(weights[conv + "/kernel"])
    _fed_by(layers, conv, source)
    take_layer(layers, bn, "BatchNormalization", epsilon=BN_EPS, center=True, scale=True)
    _fed_by(layers, bn, conv)
    for ours, theirs in (("weight", "gamma"), ("bias", "beta"), ("running_mean", "moving_mean"),
                         ("running_var", "moving_variance")):
        state[f"{key}.bn.{ours}"] = torch.from_numpy(weights[f"{bn}/{theirs}"]).float()
    state[key + ".bn.num_batches_tracked"] = torch.zeros((), dtype=torch.long)
    if relu is None:
        return bn
    take_layer(layers, relu, "ReLU", max_value=6, negative_slope=0, threshold=0)
    _fed_by(layers, relu, bn)
    return relu


def convert(read) -> dict[str, torch.Tensor]:
    """nsfwjs' MobileNetV2 layers model -> state dict of ``MobileNetV2Features`` (frozen layers only)."""
    config, weights = read_layers_model(read, FOLDER)
    layers = keras_layers(config)
    net = MobileNetV2Features()
    state: dict[str, torch.Tensor] = {}
    source = _take_conv_bn(layers, weights, state, "conv1", net.conv1, "Conv1", "bn_Conv1", "Conv1_relu",
                           "input_1")
    for i, block in enumerate(net.blocks):
        prefix, key = ("expanded_conv" if i == 0 else f"block_{i}"), f"blocks.{i}"
        hidden = source
        if block.expand is not None:
            hidden = _take_conv_bn(layers, weights, state, key + ".expand", block.expand, prefix + "_expand",
                                   prefix + "_expand_BN", prefix + "_expand_relu", source)
        dw = _take_conv_bn(layers, weights, state, key + ".depthwise", block.depthwise, prefix + "_depthwise",
                           prefix + "_depthwise_BN", prefix + "_depthwise_relu", hidden)
        out = _take_conv_bn(layers, weights, state, key + ".project", block.project, prefix + "_project",
                            prefix + "_project_BN", None, dw)
        if block.residual:
            add = take_layer(layers, prefix + "_add", "Add")
            if sorted(add["inbound"]) != sorted([source, out]):
                raise CheckpointError(f"Keras layer {prefix}_add adds {add['inbound']}, expected {source}, {out}")
            out = prefix + "_add"
        source = out
    if source != "block_10_project_BN":
        raise CheckpointError(f"MobileNetV2 port ends at {source}, expected block_10_project_BN")
    return state
