"""Export the trained network to ONNX (run by ONNX Runtime in ``facerecon.regress``)."""
from __future__ import annotations

import warnings
from pathlib import Path

import numpy as np
import torch

from ..export import atomic_path

OPSET = 17


def export_onnx(net: torch.nn.Module, input_size: int, path: str | Path, metadata: dict[str, str] | None = None,
                check: bool = True, output_name: str = "posmap") -> Path:
    """Write ``net`` (input (1, C, S, S) float in [0, 1] -> its output) to ``path``; with
    ``check``, verify that ONNX Runtime reproduces the torch output."""
    import onnx
    path = Path(path)
    net = net.eval().to(memory_format=torch.contiguous_format)
    dummy = torch.rand(1, net.in_channels, input_size, input_size, generator=torch.Generator().manual_seed(0))
    with warnings.catch_warnings():
        # the TorchScript exporter is deprecated but needs no onnxscript, which wants protobuf 5+
        warnings.simplefilter("ignore")
        with atomic_path(path) as tmp:
            torch.onnx.export(net, dummy, str(tmp), dynamo=False, opset_version=OPSET,
                              input_names=["image"], output_names=[output_name],
                              dynamic_axes={"image": {0: "batch"}, output_name: {0: "batch"}})
            model = onnx.load(str(tmp))
            for key, value in {"input_size": str(input_size), **(metadata or {})}.items():
                entry = model.metadata_props.add()
                entry.key, entry.value = key, value
            onnx.save(model, str(tmp))
    if check:
        diff = onnx_max_difference(net, path, dummy)
        if diff > 1e-3:
            raise RuntimeError(f"ONNX Runtime output differs from torch by {diff:g}")
    return path


def onnx_max_difference(net: torch.nn.Module, path: Path, x: torch.Tensor) -> float:
    import onnxruntime as ort
    with torch.no_grad():
        expected = net.eval()(x).numpy()
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    got = session.run(None, {"image": x.numpy()})[0]
    return float(np.abs(got - expected).max())


def shrink_onnx(source: str | Path, target: str | Path) -> Path:
    """Write ``source`` with its convolution weights as int8 (symmetric, one scale per output
    channel) behind DequantizeLinear nodes: a quarter of the size. Activations stay float32 and
    ONNX Runtime folds the weights back to float32 when the session is built (``regress.onnx_session``),
    so inference costs the same; only the weights' rounding (1/254 of each channel's range) moves
    the output (measured in MODEL_CARD.md)."""
    import onnx
    from onnx import helper, numpy_helper
    model = onnx.load(str(source))
    graph = model.graph
    inits = {init.name: init for init in graph.initializer}
    # weight input of Conv (axis 0 = output channels) and ConvTranspose ((C_in, C_out / g, kH, kW))
    axes = {}
    for node in graph.node:
        if node.op_type in ("Conv", "ConvTranspose") and node.input[1] in inits:
            axes[node.input[1]] = 0 if node.op_type == "Conv" else 1
    nodes = []
    for name, axis in axes.items():
        weight = numpy_helper.to_array(inits[name]).astype(np.float64)
        moved = np.moveaxis(weight, axis, 0).reshape(weight.shape[axis], -1)
        scale = np.abs(moved).max(axis=1) / 127.0
        scale[scale == 0] = 1.0
        shape = [1] * weight.ndim
        shape[axis] = -1
        q = np.clip(np.round(weight / scale.reshape(shape)), -127, 127).astype(np.int8)
        graph.initializer.remove(inits[name])
        graph.initializer.extend([numpy_helper.from_array(q, f"{name}_q"),
                                  numpy_helper.from_array(scale.astype(np.float32), f"{name}_scale"),
                                  numpy_helper.from_array(np.zeros(len(scale), np.int8), f"{name}_zero")])
        nodes.append(helper.make_node("DequantizeLinear", [f"{name}_q", f"{name}_scale", f"{name}_zero"], [name],
                                      axis=axis, name=f"{name}_dequantize"))
    # before their users: ONNX wants the graph topologically sorted
    rest = list(graph.node)
    del graph.node[:]
    graph.node.extend(nodes + rest)
    entry = model.metadata_props.add()
    entry.key, entry.value = "weights", "int8 per channel"
    onnx.checker.check_model(model)
    target = Path(target)
    with atomic_path(target) as tmp:
        onnx.save(model, str(tmp))
    return target

