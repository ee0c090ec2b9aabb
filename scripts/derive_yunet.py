"""Write facerecon/data/yunet_s.onnx: YuNet (``<shared>/models/yunet/yunet_s_640_640.onnx``, Apache-2.0)
with its input height and width made symbolic.

The published graph is fully convolutional (its reshapes use -1, its upsampling a scale of 2), but
it declares a fixed 1x3x640x640 input, which onnxruntime enforces. Declaring the height and width
free lets facerecon run it on the photo's own (padded to a multiple of 32) size: a 450x450 photo
costs a 480x480 pass instead of 640x640. Weights and nodes are unchanged. Needs the ``onnx``
package (the train extra). Re-run: ``python scripts/derive_yunet.py``.
"""
from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from facerecon.assets import PACKAGE_DATA, shared_dir  # noqa: E402
from facerecon.detect import YUNET_MODEL  # noqa: E402


def main() -> None:
    source = shared_dir() / "models" / "yunet" / "yunet_s_640_640.onnx"
    model = onnx.load(str(source))
    dims = model.graph.input[0].type.tensor_type.shape.dim
    dims[2].ClearField("dim_value")
    dims[2].dim_param = "height"
    dims[3].ClearField("dim_value")
    dims[3].dim_param = "width"
    for output in model.graph.output:   # (1, anchors, channels): the anchor count follows the size
        output.type.tensor_type.shape.dim[1].ClearField("dim_value")
        output.type.tensor_type.shape.dim[1].dim_param = "anchors"
    del model.graph.value_info[:]       # the stored 640x640 shapes of inner tensors
    onnx.checker.check_model(model)
    target = PACKAGE_DATA / YUNET_MODEL
    target.write_bytes(model.SerializeToString())
    # Same outputs as the original at 640x640, and a non-square size runs.
    x = np.random.default_rng(0).uniform(0, 255, (1, 3, 640, 640)).astype(np.float32)
    ours = ort.InferenceSession(str(target), providers=["CPUExecutionProvider"])
    theirs = ort.InferenceSession(str(source), providers=["CPUExecutionProvider"])
    for a, b in zip(ours.run(None, {"input": x}), theirs.run(None, {"input": x})):
        assert np.array_equal(a, b)
    assert ours.run(None, {"input": x[:, :, :320, :480]})[0].shape == (1, 40 * 60, 1)
    print(f"wrote {target} ({target.stat().st_size} bytes)")


if __name__ == "__main__":
    main()
