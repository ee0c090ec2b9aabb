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
