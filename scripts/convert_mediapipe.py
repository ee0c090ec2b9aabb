"""Convert MediaPipe's Face Mesh landmark network (Apache-2.0) from TFLite to ONNX.

Writes ``facerecon/data/face_landmark.onnx``: input ``image`` (N, 3, 192, 192) float RGB in
[0, 1]; outputs ``landmarks`` (N, 1404), the 468 points as x, y, z in input pixels, and
``face_flag`` (N, 1), the face-presence logit. The graph is rebuilt op by op from the TFLite
flatbuffer (no TensorFlow needed): fp16 weights are dequantised into fp32 initialisers and PReLU
is written as ``x + (1 - a) * relu(-x)``, which ONNX Runtime runs 2-3x faster than its PRelu.

The script checks the ONNX model against the TFLite interpreter on random and real crops and
refuses to write it if they differ by more than 2e-4 px. It needs, in a throwaway environment::

    python -m venv /tmp/conv && /tmp/conv/bin/pip install tflite ai-edge-litert onnx onnxruntime numpy
    pip download --no-deps mediapipe==0.10.21 -d /tmp/mp && unzip -o -q /tmp/mp/mediapipe-*.whl \
        'mediapipe/modules/face_landmark/*' -d /tmp/mp
    /tmp/conv/bin/python scripts/convert_mediapipe.py /tmp/mp/mediapipe/modules/face_landmark/face_landmark.tflite
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np
import onnx
import tflite
from onnx import TensorProto, helper, numpy_helper

OUT = Path(__file__).resolve().parents[1] / "facerecon" / "data" / "face_landmark.onnx"
OPSET = 17
TOLERANCE_PX = 2e-4
OPNAMES = {v: k for k, v in vars(tflite.BuiltinOperator).items() if not k.startswith("_")}
DTYPES = {tflite.TensorType.FLOAT32: np.float32, tflite.TensorType.FLOAT16: np.float16,
          tflite.TensorType.INT32: np.int32}


class Converter:
    """Walks the TFLite operators in order and emits NCHW ONNX nodes."""

    def __init__(self, model: tflite.Model):
        self.model = model
        self.graph = model.Subgraphs(0)
        self.nodes: list[onnx.NodeProto] = []
        self.inits: list[onnx.TensorProto] = []
        self.consts: dict[int, np.ndarray] = {}  # tensor index -> constant (NHWC layout, as TFLite keeps it)
        self.names: dict[int, str] = {}          # tensor index -> ONNX value name (NCHW)
        self.counter = 0

    def fresh(self, stem: str) -> str:
        self.counter += 1
        return f"_{stem}{self.counter}"

    def const(self, array: np.ndarray, stem: str) -> str:
        name = self.fresh(stem)
        self.inits.append(numpy_helper.from_array(np.ascontiguousarray(array), name))
        return name

    def tensor(self, index: int) -> tflite.Tensor:
        return self.graph.Tensors(index)

    def buffer(self, index: int) -> np.ndarray | None:
        t = self.tensor(index)
        data = self.model.Buffers(t.Buffer()).DataAsNumpy()
        if isinstance(data, int) or data.size == 0:
            return None
        return data.view(DTYPES[t.Type()]).reshape(t.ShapeAsNumpy())

    def value(self, index: int) -> np.ndarray:
        if index not in self.consts:
            self.consts[index] = self.buffer(index)
        return self.consts[index]

    def emit(self, op_type: str, inputs: list[str], output: str | None = None, **attrs) -> str:
        output = output or self.fresh(op_type.lower())
        self.nodes.append(helper.make_node(op_type, inputs, [output], **attrs))
        return output

    def activation(self, x: str, fused: int, output: str) -> str:
        if fused == tflite.ActivationFunctionType.NONE:
            return self.emit("Identity", [x], output)
        if fused == tflite.ActivationFunctionType.RELU:
            return self.emit("Relu", [x], output)
        if fused == tflite.ActivationFunctionType.RELU6:
            return self.emit("Clip", [x, self.const(np.float32(0), "zero"), self.const(np.float32(6), "six")], output)
        raise NotImplementedError(f"fused activation {fused}")

    def same_pads(self, in_hw, kernel, stride) -> list[int]:
        """TensorFlow's SAME padding (the extra pixel goes after) as ONNX [top, left, bottom, right]."""
        before, after = [], []
        for size, k, s in zip(in_hw, kernel, stride):
            total = max((-(-size // s) - 1) * s + k - size, 0)
            before.append(total // 2)
            after.append(total - total // 2)
        return before + after

    def convert(self) -> onnx.ModelProto:
        g = self.graph
        (inp,) = [g.Inputs(i) for i in range(g.InputsLength())]
        self.names[inp] = "image"
        for i in range(g.OperatorsLength()):
            self.operator(g.Operators(i))
        outputs = [g.Outputs(i) for i in range(g.OutputsLength())]
        out_names = ["landmarks", "face_flag"]
        for index, name in zip(outputs, out_names):
            flat = self.emit("Flatten", [self.names[index]], name, axis=1)
            assert flat == name
        graph = helper.make_graph(
            self.nodes, "face_landmark",
            [helper.make_tensor_value_info("image", TensorProto.FLOAT, ["N", 3, 192, 192])],
            [helper.make_tensor_value_info("landmarks", TensorProto.FLOAT, ["N", 1404]),
             helper.make_tensor_value_info("face_flag", TensorProto.FLOAT, ["N", 1])],
            self.inits,
        )
        model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", OPSET)],
                                  producer_name="facerecon scripts/convert_mediapipe.py")
        onnx.checker.check_model(model)
        return model

    def operator(self, op) -> None:
        code = self.model.OperatorCodes(op.OpcodeIndex())
        name = OPNAMES[max(code.BuiltinCode(), code.DeprecatedBuiltinCode())]
        ins = [op.Inputs(i) for i in range(op.InputsLength())]
        out = op.Outputs(0)
        out_name = self.tensor(out).Name().decode().replace("/", "_").replace(";", "_")
        options = op.BuiltinOptions()
        if name == "DEQUANTIZE":
            self.consts[out] = self.value(ins[0]).astype(np.float32)
            return
        if name in ("CONV_2D", "DEPTHWISE_CONV_2D"):
            opts = (tflite.Conv2DOptions() if name == "CONV_2D" else tflite.DepthwiseConv2DOptions())
            opts.Init(options.Bytes, options.Pos)
            weight = self.value(ins[1])                  # CONV: (O, kh, kw, I); DEPTHWISE: (1, kh, kw, O)
            bias = self.value(ins[2]) if len(ins) > 2 and ins[2] >= 0 else None
            in_shape = self.tensor(ins[0]).ShapeAsNumpy()  # NHWC
            if name == "CONV_2D":
                w, group = weight.transpose(0, 3, 1, 2), 1
            else:
                w, group = weight.transpose(3, 0, 1, 2), int(in_shape[3])
            kernel, stride = w.shape[2:], (opts.StrideH(), opts.StrideW())
            dil = (opts.DilationHFactor(), opts.DilationWFactor())
            assert dil == (1, 1)
            pads = (self.same_pads(in_shape[1:3], kernel, stride)
                    if opts.Padding() == tflite.Padding.SAME else [0, 0, 0, 0])
            args = [self.names[ins[0]], self.const(w.astype(np.float32), "w")]
            if bias is not None:
                args.append(self.const(bias.astype(np.float32), "b"))
            y = self.emit("Conv", args, kernel_shape=list(kernel), strides=list(stride), pads=pads, group=group)
            self.names[out] = self.activation(y, opts.FusedActivationFunction(), out_name)
        elif name == "PRELU":
            alpha = self.value(ins[1]).reshape(-1, 1, 1).astype(np.float32)
            x = self.names[ins[0]]
            neg = self.emit("Relu", [self.emit("Neg", [x])])
            scaled = self.emit("Mul", [neg, self.const(1.0 - alpha, "one_minus_alpha")])
            self.names[out] = self.emit("Add", [x, scaled], out_name)
        elif name == "ADD":
            opts = tflite.AddOptions()
            opts.Init(options.Bytes, options.Pos)
            y = self.emit("Add", [self.names[ins[0]], self.names[ins[1]]])
            self.names[out] = self.activation(y, opts.FusedActivationFunction(), out_name)
        elif name == "MAX_POOL_2D":
            opts = tflite.Pool2DOptions()
            opts.Init(options.Bytes, options.Pos)
            kernel, stride = (opts.FilterHeight(), opts.FilterWidth()), (opts.StrideH(), opts.StrideW())
            in_shape = self.tensor(ins[0]).ShapeAsNumpy()
            pads = (self.same_pads(in_shape[1:3], kernel, stride)
                    if opts.Padding() == tflite.Padding.SAME else [0, 0, 0, 0])
            self.names[out] = self.emit("MaxPool", [self.names[ins[0]]], out_name,
                                        kernel_shape=list(kernel), strides=list(stride), pads=pads)
        elif name == "PAD":
            paddings = self.value(ins[1])                # (4, 2) NHWC before/after
            nchw = paddings[[0, 3, 1, 2]]
            pads = np.concatenate([nchw[:, 0], nchw[:, 1]]).astype(np.int64)
            self.names[out] = self.emit("Pad", [self.names[ins[0]], self.const(pads, "pads")], out_name)
        else:
            raise NotImplementedError(f"TFLite op {name}")


def check(onnx_path: Path, tflite_path: Path, crops: list[np.ndarray]) -> float:
    """Largest landmark difference in px between ONNX Runtime and the TFLite interpreter."""
    import onnxruntime as ort
    from ai_edge_litert.interpreter import Interpreter
    interp = Interpreter(model_path=str(tflite_path))
    interp.allocate_tensors()
    (inp,) = interp.get_input_details()
    outs = interp.get_output_details()
    session = ort.InferenceSession(str(onnx_path), providers=["CPUExecutionProvider"])
    worst = 0.0
    for crop in crops:
        interp.set_tensor(inp["index"], crop[None])
        interp.invoke()
        expected = [interp.get_tensor(o["index"]).reshape(1, -1) for o in outs]
        got = session.run(None, {"image": crop.transpose(2, 0, 1)[None]})
        worst = max(worst, float(np.abs(got[0] - expected[0]).max()))
        if abs(float(got[1][0, 0]) - float(expected[1][0, 0])) > 1e-3:
            raise RuntimeError("face flag differs")
    return worst


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("tflite", type=Path, help="face_landmark.tflite from the mediapipe 0.10.21 wheel")
    parser.add_argument("--photos", type=Path, nargs="*", default=[],
                        help="real photos; their centre 192 px crops join the random ones in the check")
    parser.add_argument("-o", "--out", type=Path, default=OUT)
    args = parser.parse_args()
    model = tflite.Model.GetRootAsModel(args.tflite.read_bytes(), 0)
    converted = Converter(model).convert()
    tmp = args.out.with_suffix(".tmp.onnx")
    onnx.save(converted, str(tmp))
    rng = np.random.default_rng(0)
    crops = [rng.random((192, 192, 3), dtype=np.float32) for _ in range(4)]
    for path in args.photos:
        from PIL import Image
        image = Image.open(path).convert("RGB")
        side = min(image.size)
        box = ((image.width - side) // 2, (image.height - side) // 2)
        image = image.crop((*box, box[0] + side, box[1] + side)).resize((192, 192))
        crops.append(np.asarray(image, np.float32) / 255.0)
    worst = check(tmp, args.tflite, crops)
    print(f"max landmark difference vs TFLite: {worst:.2e} px over {len(crops)} crops")
    if worst > TOLERANCE_PX:
        tmp.unlink()
        print(f"error: difference above {TOLERANCE_PX} px; not written", file=sys.stderr)
        return 1
    tmp.replace(args.out)
    print(f"wrote {args.out} ({args.out.stat().st_size / 1e6:.2f} MB)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
