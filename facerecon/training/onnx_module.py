"""A trainable torch module built from a plain convolutional ONNX graph, and its export back.

Made for ``facerecon/data/face_landmark.onnx`` (Face Mesh's network as ``scripts/convert_mediapipe.py``
writes it), so it knows that graph's operators: Conv, Add, Mul, Neg, Relu, Clip, MaxPool, Pad,
Flatten, Identity. Every initialiser that feeds a Conv or a Mul (the PReLU slopes, written as
``1 - a``) becomes a parameter, so fine-tuning reaches every weight; exporting writes a graph with
the same input and output names, which ``facerecon.landmarks`` runs unchanged.
"""
from __future__ import annotations

import warnings
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from ..export import atomic_path

OPSET = 17


class OnnxModule(nn.Module):
    """``forward(image)`` -> the graph's outputs in order (a tuple of tensors)."""

    def __init__(self, path: str | Path):
        super().__init__()
        import onnx
        from onnx import numpy_helper
        graph = onnx.load(str(path)).graph
        self.input_name = graph.input[0].name
        self.output_names = [o.name for o in graph.output]
        self.params = nn.ParameterDict()
        self.consts: dict[str, np.ndarray] = {}
        for init in graph.initializer:
            self.consts[init.name] = numpy_helper.to_array(init)
        trainable = {name for node in graph.node if node.op_type in ("Conv", "Mul") for name in node.input[1:]}
        self._keys: dict[str, str] = {}
        # parameters in the graph's initialiser order, so that checkpoints map back in any process
        for name in [i.name for i in graph.initializer if i.name in trainable]:
            key = f"p{len(self._keys)}"
            self._keys[name] = key
            self.params[key] = nn.Parameter(torch.from_numpy(self.consts[name].astype(np.float32).copy()))
        self.nodes = [(n.op_type, list(n.input), n.output[0],
                       {a.name: onnx.helper.get_attribute_value(a) for a in n.attribute}) for n in graph.node]
        unknown = {op for op, *_ in self.nodes} - set(_OPS)
        if unknown:
            raise ValueError(f"{path}: unsupported ONNX operators {sorted(unknown)}")

    def value(self, name: str, env: dict[str, torch.Tensor]) -> torch.Tensor:
        if name in env:
            return env[name]
        if name in self._keys:
            return self.params[self._keys[name]]
        return torch.from_numpy(np.array(self.consts[name]))

    def forward(self, image: torch.Tensor) -> tuple[torch.Tensor, ...]:
        env = {self.input_name: image}
        for op, inputs, output, attrs in self.nodes:
            env[output] = _OPS[op](self, [self.value(i, env) if i else None for i in inputs], attrs)
        return tuple(env[name] for name in self.output_names)


def _conv(_, args, attrs):
    x, w, b = (args + [None])[:3]
    top, left, bottom, right = attrs.get("pads", [0, 0, 0, 0])
    if (top, left) == (bottom, right):
        return F.conv2d(x, w, b, stride=attrs.get("strides", [1, 1]), padding=(top, left), groups=attrs.get("group", 1))
    x = F.pad(x, (left, right, top, bottom))
    return F.conv2d(x, w, b, stride=attrs.get("strides", [1, 1]), groups=attrs.get("group", 1))


def _max_pool(_, args, attrs):
    top, left, bottom, right = attrs.get("pads", [0, 0, 0, 0])
    x = args[0]
    if any((top, left, bottom, right)):
        x = F.pad(x, (left, right, top, bottom), value=float("-inf"))
    return F.max_pool2d(x, attrs["kernel_shape"], attrs.get("strides", attrs["kernel_shape"]))


def _pad(_, args, attrs):
    pads = [int(v) for v in args[1]]
    n = len(pads) // 2
    before, after = pads[:n], pads[n:]
    flat = []
    for b, a in zip(reversed(before), reversed(after)):   # F.pad takes the last axis first
        flat += [b, a]
    return F.pad(args[0], flat)


_OPS = {
    "Conv": _conv,
    "Add": lambda _, a, __: a[0] + a[1],
    "Mul": lambda _, a, __: a[0] * a[1],
    "Neg": lambda _, a, __: -a[0],
    "Relu": lambda _, a, __: torch.relu(a[0]),
    "Clip": lambda _, a, __: torch.clamp(a[0], float(a[1]), float(a[2])),
    "Identity": lambda _, a, __: a[0],
    "Flatten": lambda _, a, attrs: torch.flatten(a[0], attrs.get("axis", 1)),
    "MaxPool": _max_pool,
    "Pad": _pad,
}


def export_module(net: OnnxModule, path: str | Path, input_size: int, metadata: dict[str, str] | None = None) -> Path:
    """Write ``net`` as ONNX with its input/output names and a dynamic batch axis."""
    import onnx
    path = Path(path)
    net = net.eval()
    dummy = torch.rand(1, 3, input_size, input_size, generator=torch.Generator().manual_seed(0))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")   # the TorchScript exporter is deprecated, but needs no onnxscript
        with atomic_path(path) as tmp:
            torch.onnx.export(net, dummy, str(tmp), dynamo=False, opset_version=OPSET,
                              input_names=[net.input_name], output_names=net.output_names,
                              dynamic_axes={net.input_name: {0: "N"}, **{n: {0: "N"} for n in net.output_names}})
            model = onnx.load(str(tmp))
            for key, value in (metadata or {}).items():
                entry = model.metadata_props.add()
                entry.key, entry.value = key, value
            onnx.save(model, str(tmp))
    return path
