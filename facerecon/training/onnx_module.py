"""A trainable torch module built from a plain convolutional ONNX graph, and its export back.

Made for ``facerecon/data/face_landmark.onnx`` (Face Mesh's network as ``scripts/convert_mediapipe.py``
writes it), so it knows that graph's operators: Conv, Add, Mul, Neg, Relu, Clip, MaxPool, Pad,
Flatten, Identity; and the constant shape arithmetic torch's exporter writes for each Pad
(Constant, ConstantOfShape, Concat, Reshape, Slice, Transpose, Cast), so that a fine-tuned export
such as ``face_landmark_ict.onnx`` loads again to go on training. Weights stored in fp16 (each
through a Cast, as the converter writes them) are folded to fp32. Every initialiser that feeds a Conv or a Mul (the PReLU slopes, written as
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
UNCERTAINTY = "uncertainty"   # the optional third output: per-point log standard deviation, crop px


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
        # Weights stored in fp16 reach the graph through a Cast: fold it, so that they train in fp32
        stored_as = {name: name for name in self.consts}
        nodes = []
        for n in graph.node:
            if n.op_type == "Cast" and n.input[0] in stored_as:
                dtype = onnx.helper.tensor_dtype_to_np_dtype(onnx.helper.get_attribute_value(n.attribute[0]))
                self.consts[n.output[0]] = self.consts[n.input[0]].astype(dtype)
                stored_as[n.input[0]] = n.output[0]
            else:
                nodes.append(n)
        trainable = {name for node in nodes if node.op_type in ("Conv", "Mul") for name in node.input[1:]}
        self._keys: dict[str, str] = {}
        # parameters in the graph's initialiser order, so that checkpoints map back in any process
        for name in [stored_as[i.name] for i in graph.initializer if stored_as[i.name] in trainable]:
            key = f"p{len(self._keys)}"
            self._keys[name] = key
            self.params[key] = nn.Parameter(torch.from_numpy(self.consts[name].astype(np.float32).copy()))
        self.nodes = [(n.op_type, list(n.input), n.output[0],
                       {a.name: onnx.helper.get_attribute_value(a) for a in n.attribute}) for n in nodes]
        unknown = {op for op, *_ in self.nodes} - set(_OPS)
        if unknown:
            raise ValueError(f"{path}: unsupported ONNX operators {sorted(unknown)}")
        if self.has_uncertainty:
            self._detach_uncertainty_features()

    @property
    def has_uncertainty(self) -> bool:
        return UNCERTAINTY in self.output_names

    def add_uncertainty_head(self, log_sigma: float) -> None:
        """A second head beside the landmark output, the same convolution shape on the same
        features: ``uncertainty`` (N, points), each point's log standard deviation in crop pixels,
        starting at ``log_sigma`` everywhere."""
        if self.has_uncertainty:
            return
        op, (features, weight, _), _, attrs = self._head_conv(self.output_names[0])
        shape = tuple(self.value(weight, {}).shape)
        names = [f"{UNCERTAINTY}_head.weight", f"{UNCERTAINTY}_head.bias"]
        for name, init in zip(names, (torch.zeros((shape[0] // 3,) + shape[1:]), torch.full((shape[0] // 3,), log_sigma))):
            key = f"p{len(self._keys)}"
            self._keys[name] = key
            self.params[key] = nn.Parameter(init)
        self.nodes += [(op, [features, *names], f"{UNCERTAINTY}_map", attrs),
                       ("Flatten", [f"{UNCERTAINTY}_map"], UNCERTAINTY, {"axis": 1})]
        self.output_names.append(UNCERTAINTY)
        self._detach_uncertainty_features()

    def head_parameters(self) -> list[nn.Parameter]:
        """The uncertainty head's parameters (empty without one)."""
        if not self.has_uncertainty:
            return []
        return [self.params[self._keys[name]] for name in self._head_conv(UNCERTAINTY)[1][1:] if name]

    def _head_conv(self, output: str) -> tuple:
        """The convolution whose flattened output is the graph output ``output``."""
        producer = {n[2]: n for n in self.nodes}
        node = producer[next(n for n in self.nodes if n[0] == "Flatten" and n[2] == output)[1][0]]
        while node[0] == "Identity":   # the converter names outputs through Identity nodes
            node = producer[node[1][0]]
        return node

    def _detach_uncertainty_features(self) -> None:
        """Training the uncertainty head leaves the landmarks' gradients as they were: its input
        features are detached (a no-op in the exported graph, so redone on every load)."""
        head = self._head_conv(UNCERTAINTY)
        detached = f"{head[1][0]}_detached"
        if head[1][0].endswith("_detached"):
            return
        index = self.nodes.index(head)
        self.nodes[index] = (head[0], [detached, *head[1][1:]], head[2], head[3])
        self.nodes.insert(index, ("Detach", [head[1][0]], detached, {}))

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


def _onnx_tensor(value) -> torch.Tensor:
    from onnx import numpy_helper
    return torch.from_numpy(np.array(numpy_helper.to_array(value)))


def _cast(_, args, attrs):
    from onnx import helper
    return args[0].to(torch.from_numpy(np.zeros(0, helper.tensor_dtype_to_np_dtype(attrs["to"]))).dtype)


def _reshape(_, args, attrs):
    shape = [int(v) for v in args[1]]
    if not attrs.get("allowzero", 0):   # 0 copies the input's size on that axis
        shape = [args[0].shape[i] if v == 0 else v for i, v in enumerate(shape)]
    return args[0].reshape(shape)


def _slice(_, args, attrs):
    x, starts, ends = args[:3]
    axes = args[3] if len(args) > 3 and args[3] is not None else range(len(starts))
    steps = args[4] if len(args) > 4 and args[4] is not None else [1] * len(starts)
    index = [slice(None)] * x.dim()
    for start, end, axis, step in zip(starts, ends, axes, steps, strict=True):
        start, end, axis, step = int(start), int(end), int(axis), int(step)
        if step < 0:   # torch slicing takes no negative step: flip, then slice forwards
            size = x.shape[axis]
            start = min(max(start + size if start < 0 else start, 0), size - 1)
            end = min(max(end + size if end < 0 else end, -1), size - 1)
            x = torch.flip(x, [axis])
            start, end, step = size - 1 - start, size - 1 - end, -step
        index[axis] = slice(start, end, step)
    return x[tuple(index)]


_OPS = {
    "Conv": _conv,
    "Add": lambda _, a, __: a[0] + a[1],
    "Mul": lambda _, a, __: a[0] * a[1],
    "Neg": lambda _, a, __: -a[0],
    "Relu": lambda _, a, __: torch.relu(a[0]),
    "Clip": lambda _, a, __: torch.clamp(a[0], float(a[1]), float(a[2])),
    "Identity": lambda _, a, __: a[0],
    "Detach": lambda _, a, __: a[0].detach(),   # not an ONNX operator: only added heads use it
    "Flatten": lambda _, a, attrs: torch.flatten(a[0], attrs.get("axis", 1)),
    "MaxPool": _max_pool,
    "Pad": _pad,
    "Constant": lambda _, __, attrs: _onnx_tensor(attrs["value"]),
    "ConstantOfShape": lambda _, a, attrs: torch.full([int(v) for v in a[0]], _onnx_tensor(attrs["value"]).item(),
                                                      dtype=_onnx_tensor(attrs["value"]).dtype),
    "Concat": lambda _, a, attrs: torch.cat(a, attrs["axis"]),
    "Reshape": _reshape,
    "Slice": _slice,
    "Transpose": lambda _, a, attrs: a[0].permute(attrs["perm"]),
    "Cast": _cast,
}


def export_module(net: OnnxModule, path: str | Path, input_size: int, metadata: dict[str, str] | None = None,
                  half: bool = False) -> Path:
    """Write ``net`` as ONNX with its input/output names and a dynamic batch axis; ``half``: its
    weights stored in fp16, each cast to fp32 in the graph (half the file; the arithmetic stays fp32)."""
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
            if half:
                _store_half(model.graph)
            onnx.save(model, str(tmp))
    return path


def _store_half(graph) -> None:
    """Every fp32 weight of more than one value in ``graph`` stored as fp16 behind a Cast to fp32."""
    from onnx import TensorProto, helper, numpy_helper
    casts = []
    for init in graph.initializer:
        if init.data_type != TensorProto.FLOAT or int(np.prod(init.dims)) <= 1:
            continue
        value = numpy_helper.to_array(init)
        name = init.name
        init.CopyFrom(numpy_helper.from_array(value.astype(np.float16), f"{name}_fp16"))
        casts.append(helper.make_node("Cast", [f"{name}_fp16"], [name], to=TensorProto.FLOAT))
    nodes = casts + list(graph.node)
    del graph.node[:]
    graph.node.extend(nodes)
