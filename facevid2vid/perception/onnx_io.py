"""Reading PyTorch-exported ONNX graphs: initializers, a topological node walk, and layer matching.

Needs the ``onnx`` package, at fetch (conversion) time only. The exported graphs here are
plain chains of Conv / PRelu / Gemm layers (BatchNorm already folded into the convolutions'
biases by the exporter), so a converter builds the torch module with the same layers in the
same order and ``match_layers`` pairs them up one by one, checking every shape and attribute
on the way, so an architecture that is out of step with the graph fails loudly.
"""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import torch
from torch import nn


def _onnx():
    try:
        import onnx
        from onnx import numpy_helper
    except ImportError:  # pragma: no cover - depends on the environment
        raise ValueError("converting an ONNX network needs the onnx package: pip install onnx") from None
    return onnx, numpy_helper


def read_model(data: bytes):
    """The ``onnx.ModelProto`` of a serialised model."""
    onnx, _ = _onnx()
    return onnx.load_from_string(data)


def read_initializers(data: bytes) -> dict[str, np.ndarray]:
    """Every initializer of the graph, by name."""
    _, numpy_helper = _onnx()
    return {t.name: numpy_helper.to_array(t) for t in read_model(data).graph.initializer}


@dataclass
class Node:
    """One graph node with its attributes decoded; ``params`` are the initializer inputs, in order."""

    op: str
    inputs: list[str]
    outputs: list[str]
    attrs: dict = field(default_factory=dict)
    params: list[np.ndarray] = field(default_factory=list)


def walk(data: bytes) -> list[Node]:
    """The graph's compute nodes in topological order (from the graph inputs), ``Constant`` nodes
    folded away: their values go into ``params`` of the nodes that read them, like initializers."""
    onnx, numpy_helper = _onnx()
    graph = read_model(data).graph
    consts = {t.name: numpy_helper.to_array(t) for t in graph.initializer}
    pending = []
    for n in graph.node:
        attrs = {a.name: onnx.helper.get_attribute_value(a) for a in n.attribute}
        if n.op_type == "Constant":
            consts[n.output[0]] = numpy_helper.to_array(attrs["value"])
        else:
            pending.append(Node(n.op_type, list(n.input), list(n.output), attrs))
    ready = {i.name for i in graph.input} | set(consts) | {""}
    ordered: list[Node] = []
    while pending:  # Kahn's algorithm: emit any node whose inputs are all available
        rest = []
        for node in pending:
            if all(i in ready for i in node.inputs):
                node.params = [consts[i] for i in node.inputs if i in consts]
                ordered.append(node)
                ready.update(node.outputs)
            else:
                rest.append(node)
        if len(rest) == len(pending):
            raise ValueError(f"ONNX graph has {len(rest)} nodes whose inputs are never produced")
        pending = rest
    return ordered


def _check(ok: bool, what: str, module: str, node: Node) -> None:
    if not ok:
        raise ValueError(f"ONNX {node.op} -> {node.outputs[0]} does not match {module}: {what}")


def _conv_state(name: str, conv: nn.Conv2d, node: Node) -> dict[str, np.ndarray]:
    weight = node.params[0]
    _check(tuple(weight.shape) == tuple(conv.weight.shape), f"weight {weight.shape} vs {tuple(conv.weight.shape)}",
           name, node)
    a = node.attrs
    _check(int(a.get("group", 1)) == conv.groups, f"groups {a.get('group', 1)} vs {conv.groups}", name, node)
    _check(tuple(a.get("strides", (1, 1))) == conv.stride, f"strides {a.get('strides')} vs {conv.stride}", name, node)
    pads = tuple(a.get("pads", (0, 0, 0, 0)))
    _check(pads == tuple(conv.padding) * 2, f"pads {pads} vs {conv.padding}", name, node)
    _check(tuple(a.get("dilations", (1, 1))) == conv.dilation, f"dilations {a.get('dilations')}", name, node)
    _check((len(node.params) == 2) == (conv.bias is not None), "bias present in one only", name, node)
    out = {f"{name}.weight": weight}
    if conv.bias is not None:
        out[f"{name}.bias"] = node.params[1]
    return out


def _prelu_state(name: str, prelu: nn.PReLU, node: Node) -> dict[str, np.ndarray]:
    slope = node.params[0].reshape(-1)  # ONNX (C, 1, 1) -> torch (C,)
    _check(slope.shape == tuple(prelu.weight.shape), f"slope {node.params[0].shape} vs {tuple(prelu.weight.shape)}",
           name, node)
    return {f"{name}.weight": slope}


def _gemm_state(name: str, linear: nn.Linear, node: Node) -> dict[str, np.ndarray]:
    a = node.attrs
    _check(float(a.get("alpha", 1.0)) == 1.0 and float(a.get("beta", 1.0)) == 1.0, "alpha/beta != 1", name, node)
    weight = node.params[0] if int(a.get("transB", 0)) else node.params[0].T  # torch Linear: (out, in)
    _check(tuple(weight.shape) == tuple(linear.weight.shape), f"weight {weight.shape}", name, node)
    _check(len(node.params) == 2 and linear.bias is not None, "needs a bias", name, node)
    return {f"{name}.weight": weight, f"{name}.bias": node.params[1]}


_LAYERS = {"Conv": (nn.Conv2d, _conv_state), "PRelu": (nn.PReLU, _prelu_state), "Gemm": (nn.Linear, _gemm_state)}


def match_layers(net: nn.Module, nodes: list[Node]) -> dict[str, torch.Tensor]:
    """State dict of ``net`` from the weighted graph nodes, paired in order with its Conv2d /
    PReLU / Linear submodules (registration order). Raises ValueError on any mismatch."""
    graph_layers = [n for n in nodes if n.op in _LAYERS and n.params]
    kinds = tuple(cls for cls, _ in _LAYERS.values())
    modules = [(name, m) for name, m in net.named_modules() if isinstance(m, kinds)]
    if len(graph_layers) != len(modules):
        raise ValueError(f"ONNX graph has {len(graph_layers)} weighted layers, the module {len(modules)}")
    state: dict[str, np.ndarray] = {}
    for node, (name, module) in zip(graph_layers, modules):
        cls, fill = _LAYERS[node.op]
        _check(isinstance(module, cls), f"expected a {cls.__name__}, found {type(module).__name__}", name, node)
        state.update(fill(name, module, node))
    # np.array copies: initializer arrays are read-only views of the serialised model
    return {k: torch.from_numpy(np.array(v, dtype=np.float32)) for k, v in state.items()}
