"""Convert MediaPipe's Face Mesh landmark networks (Apache-2.0) from TFLite to ONNX.

Two networks of the mediapipe 0.10.21 wheel, both with input ``image`` (N, 3, 192, 192) float RGB
in [0, 1] and outputs ``landmarks`` (N, 3 * points), x, y, z in input pixels, and ``face_flag``
(N, 1), the face-presence logit:

- ``face_landmark.tflite`` -> ``facerecon/data/face_landmark.onnx``: the 468 points.
- ``face_landmark_with_attention.tflite`` -> ``facerecon/data/face_landmark_attention.onnx``: 478
  points. The network refines the lips and both eyes from 16 x 16 patches of its own feature map,
  taken under affine maps fitted to its first 468 points; MediaPipe's custom ops for that
  (Landmarks2TransformMatrix, TransformTensorBilinear, TransformLandmarks) are written here in
  standard ONNX (the map as a 4 x 4 matrix, GridSample, MatMul), and so is the refinement
  MediaPipe's graph does after it (``LandmarksRefinementCalculator``): the refined lip and eye
  points replace the mesh's x, y (z stays the mesh's); the irises are points 468-472 (left) and
  473-477 (right) with the mean z of their eye's contour.

The graph is rebuilt op by op from the TFLite flatbuffer (no TensorFlow needed): fp16 weights are
kept fp16, each cast to fp32 in the graph (exact, half the size; ONNX Runtime folds the casts
when it loads the model, and the training's OnnxModule folds them into fp32 parameters) and PReLU is
written as ``x + (1 - a) * relu(-x)``, which ONNX Runtime runs 2-3x faster than its PRelu.

The script checks the ONNX model on random and real crops and refuses to write it if its points
differ by more than 2e-4 px: the 468-point net against the TFLite interpreter; the attention net
(whose custom ops only MediaPipe registers) against MediaPipe's own graph, raw network outputs and
the refined 478 points. It needs, in a throwaway environment::

    python -m venv /tmp/conv && /tmp/conv/bin/pip install tflite ai-edge-litert onnx onnxruntime numpy pillow
    pip download --no-deps mediapipe==0.10.21 -d /tmp/mp && unzip -o -q /tmp/mp/mediapipe-*.whl \
        'mediapipe/modules/face_landmark/*' -d /tmp/mp
    /tmp/conv/bin/python scripts/convert_mediapipe.py /tmp/mp/mediapipe/modules/face_landmark/face_landmark.tflite

and for the attention net mediapipe itself beside them (its pins: numpy < 2, protobuf < 5, so an
onnx that still takes protobuf 4)::

    /tmp/conv/bin/pip install --no-deps /tmp/mp/mediapipe-*.whl
    /tmp/conv/bin/pip install "numpy<2" "protobuf<5" "onnx<1.17" absl-py attrs matplotlib opencv-python-headless
    /tmp/conv/bin/python scripts/convert_mediapipe.py \
        /tmp/mp/mediapipe/modules/face_landmark/face_landmark_with_attention.tflite --photos CROPS...

``--photos``: real images; their centre squares, resized to 192 px, join the random crops. For the
attention net give face crops (MediaPipe's graph returns refined points only where it sees a face):
the shipped model was checked on 20 crops that ``facerecon.landmarks`` made of helen_train photos.
"""
from __future__ import annotations

import argparse
import sys
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import onnx
import tflite
from flatbuffers import flexbuffers
from onnx import TensorProto, helper, numpy_helper

DATA = Path(__file__).resolve().parents[1] / "facerecon" / "data"
OUT_NAMES = {"face_landmark": "face_landmark.onnx", "face_landmark_with_attention": "face_landmark_attention.onnx"}
OPSET = 17
TOLERANCE_PX = 2e-4
OPNAMES = {v: k for k, v in vars(tflite.BuiltinOperator).items() if not k.startswith("_")}
DTYPES = {tflite.TensorType.FLOAT32: np.float32, tflite.TensorType.FLOAT16: np.float16,
          tflite.TensorType.INT32: np.int32}
MESH_POINTS = 468
# The attention net's outputs (TFLite names) and where MediaPipe's refinement puts them.
MESH, FLAG = "output_mesh_identity", "conv_faceflag"
CONTOURS = ("output_lips", "output_left_eye", "output_right_eye")  # replace x, y of the mesh points their patch was cut around
IRISES = {"output_left_iris": "output_left_eye", "output_right_iris": "output_right_eye"}  # new points, in this order
EYE_CONTOUR = 16  # the eye's first 16 points (lower lid, then upper): the iris takes their mean z


@dataclass(frozen=True)
class Patch:
    """A 4 x 4 crop matrix's provenance: the mesh points its box was fitted to."""

    subset: tuple[int, ...]


class Converter:
    """Walks the TFLite operators in order and emits NCHW ONNX nodes."""

    def __init__(self, model: tflite.Model):
        self.model = model
        self.graph = model.Subgraphs(0)
        self.nodes: list[onnx.NodeProto] = []
        self.inits: list[onnx.TensorProto] = []
        self.consts: dict[int, np.ndarray] = {}  # tensor index -> constant (NHWC layout, as TFLite keeps it)
        self.names: dict[int, str] = {}          # tensor index -> ONNX value name (NCHW)
        self.patches: dict[int, Patch] = {}      # tensor index (crop matrices, transformed points) -> its patch
        self.half: set[int] = set()              # tensor indices of constants stored as fp16 in the TFLite file
        self.counter = 0

    def fresh(self, stem: str) -> str:
        self.counter += 1
        return f"_{stem}{self.counter}"

    def const(self, array: np.ndarray, stem: str) -> str:
        name = self.fresh(stem)
        self.inits.append(numpy_helper.from_array(np.array(array, order="C"), name))  # keeps 0-d scalars 0-d
        return name

    def tensor(self, index: int) -> tflite.Tensor:
        return self.graph.Tensors(index)

    def shape(self, index: int) -> list[int]:
        return [int(d) for d in self.tensor(index).ShapeAsNumpy()]

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

    def weight(self, array: np.ndarray, index: int, stem: str) -> str:
        """A float constant taken from tensor ``index``: kept in fp16 when the TFLite file has it so
        (exact, half the size; ONNX Runtime folds the Cast when it loads the model)."""
        if index not in self.half:
            return self.const(array.astype(np.float32), stem)
        return self.emit("Cast", [self.const(array.astype(np.float16), stem)], to=TensorProto.FLOAT)

    def operand(self, index: int) -> str:
        """A computed tensor's name, or a constant (not a 4D one: those would need NCHW) as an initialiser."""
        if index in self.names:
            return self.names[index]
        value = self.value(index)
        assert value is not None and value.ndim < 4, f"tensor {index}"
        return self.weight(value, index, "c")

    def emit(self, op_type: str, inputs: list[str], output: str | None = None, **attrs) -> str:
        output = output or self.fresh(op_type.lower())
        self.nodes.append(helper.make_node(op_type, inputs, [output], **attrs))
        return output

    def ints(self, values) -> str:
        return self.const(np.asarray(values, np.int64), "i")

    def floats(self, values) -> str:
        return self.const(np.asarray(values, np.float32), "f")

    def take(self, x: str, indices, axis: int) -> str:
        return self.emit("Gather", [x, self.ints(indices)], axis=axis)

    def slice(self, x: str, start: int, end: int, axis: int) -> str:
        return self.emit("Slice", [x, self.ints([start]), self.ints([end]), self.ints([axis])])

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
        outputs = {self.tensor(g.Outputs(i)).Name().decode(): g.Outputs(i) for i in range(g.OutputsLength())}
        if MESH in outputs:
            points = self.refine(outputs)
            self.emit("Flatten", [self.names[outputs[FLAG]]], "face_flag", axis=1)
        else:
            mesh, flag = (g.Outputs(i) for i in range(2))
            points = MESH_POINTS
            self.emit("Flatten", [self.names[mesh]], "landmarks", axis=1)
            self.emit("Flatten", [self.names[flag]], "face_flag", axis=1)
        graph = helper.make_graph(
            self.nodes, "face_landmark",
            [helper.make_tensor_value_info("image", TensorProto.FLOAT, ["N", 3, 192, 192])],
            [helper.make_tensor_value_info("landmarks", TensorProto.FLOAT, ["N", 3 * points]),
             helper.make_tensor_value_info("face_flag", TensorProto.FLOAT, ["N", 1])],
            self.inits,
        )
        model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", OPSET)],
                                  producer_name="facerecon scripts/convert_mediapipe.py")
        onnx.checker.check_model(model)
        return model

    def refine(self, outputs: dict[str, int]) -> int:
        """MediaPipe's LandmarksRefinementCalculator on the attention net's outputs -> ``landmarks``;
        returns the number of points (478)."""
        mesh = self.emit("Reshape", [self.names[outputs[MESH]], self.ints([-1, MESH_POINTS, 3])])
        sources, source_of = [self.slice(mesh, 0, 2, axis=2)], np.arange(MESH_POINTS)
        offset = MESH_POINTS
        mesh_z = self.slice(mesh, 2, 3, axis=2)
        z = [mesh_z]
        for name in (*CONTOURS, *IRISES):
            subset = self.patches[outputs[name]].subset
            n = self.shape(outputs[name])[-1] // 2
            sources.append(self.emit("Reshape", [self.names[outputs[name]], self.ints([-1, n, 2])]))
            if name in IRISES:
                eye = self.patches[outputs[IRISES[name]]].subset[:EYE_CONTOUR]
                source_of = np.concatenate([source_of, offset + np.arange(n)])
                mean = self.emit("ReduceMean", [self.take(mesh_z, list(eye), axis=1)], axes=[1], keepdims=1)
                z.append(self.emit("Tile", [mean, self.ints([1, n, 1])]))
            else:
                assert len(subset) == n, name
                source_of[list(subset)] = offset + np.arange(n)
            offset += n
        xy = self.take(self.emit("Concat", sources, axis=1), source_of, axis=1)
        points = len(source_of)
        xyz = self.emit("Concat", [xy, self.emit("Concat", z, axis=1)], axis=2)
        self.emit("Reshape", [xyz, self.ints([-1, 3 * points])], "landmarks")
        return points

    def operator(self, op) -> None:
        code = self.model.OperatorCodes(op.OpcodeIndex())
        name = OPNAMES[max(code.BuiltinCode(), code.DeprecatedBuiltinCode())]
        ins = [op.Inputs(i) for i in range(op.InputsLength())]
        out = op.Outputs(0)
        out_name = self.tensor(out).Name().decode().replace("/", "_").replace(";", "_")
        options = op.BuiltinOptions()
        if name == "DEQUANTIZE":
            self.consts[out] = self.value(ins[0]).astype(np.float32)
            if self.tensor(ins[0]).Type() == tflite.TensorType.FLOAT16:
                self.half.add(out)
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
            args = [self.names[ins[0]], self.weight(w, ins[1], "w")]
            if bias is not None:
                args.append(self.weight(bias, ins[2], "b"))
            y = self.emit("Conv", args, kernel_shape=list(kernel), strides=list(stride), pads=pads, group=group)
            self.names[out] = self.activation(y, opts.FusedActivationFunction(), out_name)
        elif name == "PRELU":
            alpha = self.value(ins[1]).reshape(-1, 1, 1).astype(np.float32)
            x = self.names[ins[0]]
            neg = self.emit("Relu", [self.emit("Neg", [x])])
            scaled = self.emit("Mul", [neg, self.const(1.0 - alpha, "one_minus_alpha")])
            self.names[out] = self.emit("Add", [x, scaled], out_name)
        elif name in ("ADD", "MUL"):
            opts = tflite.AddOptions() if name == "ADD" else tflite.MulOptions()
            opts.Init(options.Bytes, options.Pos)
            y = self.emit(name.capitalize(), [self.operand(ins[0]), self.operand(ins[1])])
            self.names[out] = self.activation(y, opts.FusedActivationFunction(), out_name)
            if ins[0] in self.patches:
                self.patches[out] = self.patches[ins[0]]
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
        elif name == "RESHAPE":
            # Only between 1 x 1 feature maps and point arrays, where NHWC and NCHW share the data order.
            shapes = self.shape(ins[0]), self.shape(out)
            assert all(len(s) < 4 or s[1:3] == [1, 1] for s in shapes), shapes
            target = shapes[1][1:] if len(shapes[1]) < 4 else [shapes[1][3], 1, 1]
            self.names[out] = self.emit("Reshape", [self.names[ins[0]], self.ints([-1, *target])], out_name)
            if ins[0] in self.patches:
                self.patches[out] = self.patches[ins[0]]
        elif name == "STRIDED_SLICE":
            begin, end, strides = (self.value(i) for i in ins[1:4])
            assert not begin.any() and (strides == 1).all() and (end >= self.shape(ins[0])).all(), "not a copy"
            self.names[out] = self.emit("Identity", [self.names[ins[0]]], out_name)
        elif name == "CUSTOM":
            custom = code.CustomCode().decode()
            opts = flexbuffers.Loads(bytes(op.CustomOptionsAsNumpy())) if op.CustomOptionsLength() else {}
            if custom == "Landmarks2TransformMatrix":
                assert code.Version() == 2, custom
                self.names[out] = self.landmarks_to_matrix(self.names[ins[0]], opts, out_name)
                self.patches[out] = Patch(tuple(opts["subset_idxs"]))
            elif custom == "TransformTensorBilinear":
                assert code.Version() == 2, custom
                self.names[out] = self.transform_tensor(self.names[ins[0]], self.shape(ins[0])[1:3], self.names[ins[1]],
                                                        (opts["output_height"], opts["output_width"]), out_name)
            elif custom == "TransformLandmarks":
                assert code.Version() == 2 and self.shape(ins[0])[-1] == 2, custom
                self.names[out] = self.transform_points(self.names[ins[0]], self.names[ins[1]], out_name)
                self.patches[out] = self.patches[ins[1]]
            else:
                raise NotImplementedError(f"custom op {custom}")
        else:
            raise NotImplementedError(f"TFLite op {name}")

    def landmarks_to_matrix(self, points: str, opts: dict, output: str) -> str:
        """MediaPipe's Landmarks2TransformMatrix v2: (N, 468, 3) points -> (N, 4, 4) matrix taking a
        patch's pixel coordinates to the points' frame. The patch is turned so that the line from
        point ``left_rotation_idx`` to ``right_rotation_idx`` is at ``target_rotation_radians``, and
        covers the subset's box in that frame times ``scale_x``, ``scale_y``."""
        ow, oh = opts["output_width"], opts["output_height"]
        pair = self.slice(self.take(points, [opts["left_rotation_idx"], opts["right_rotation_idx"]], axis=1), 0, 2, axis=2)
        d = self.emit("Sub", [self.take(pair, 1, axis=1), self.take(pair, 0, axis=1)])                   # (N, 2)
        u = self.emit("Div", [d, self.emit("Sqrt", [self.emit("ReduceSum", [self.emit("Mul", [d, d]), self.ints([1])])])])
        # rotation r = target - atan2(d): cos r and sin r from the unit vector u = (cos, sin) of atan2(d)
        t = float(opts["target_rotation_radians"])
        cs = self.emit("MatMul", [u, self.floats([[np.cos(t), np.sin(t)], [np.sin(t), -np.cos(t)]])])  # (N, 2)
        c, s = self.slice(cs, 0, 1, axis=1), self.slice(cs, 1, 2, axis=1)                                 # (N, 1)
        minus_s = self.emit("Neg", [s])
        turn = self.emit("Reshape", [self.emit("Concat", [c, s, minus_s, c], axis=1), self.ints([-1, 2, 2])])  # R(r)^T
        back = self.emit("Transpose", [turn], perm=[0, 2, 1])                                                  # R(r)
        subset = self.slice(self.take(points, list(opts["subset_idxs"]), axis=1), 0, 2, axis=2)           # (N, K, 2)
        turned = self.emit("MatMul", [subset, turn])                                                      # R(r) p
        hi = self.emit("ReduceMax", [turned], axes=[1], keepdims=0)
        lo = self.emit("ReduceMin", [turned], axes=[1], keepdims=0)
        size = self.emit("Sub", [hi, lo])
        mid = self.emit("Mul", [self.emit("Add", [hi, lo]), self.floats(0.5)])
        row = self.emit("Reshape", [mid, self.ints([-1, 1, 2])])
        centre = self.emit("Reshape", [self.emit("MatMul", [row, back]), self.ints([-1, 2])])  # R(-r) mid, as rows
        scale = self.emit("Mul", [size, self.floats([opts["scale_x"] / ow, opts["scale_y"] / oh])])
        sx, sy = self.slice(scale, 0, 1, axis=1), self.slice(scale, 1, 2, axis=1)
        # linear part R(-r) diag(sx, sy) = [[c sx, s sy], [-s sx, c sy]]; then the shift by -(ow, oh) / 2
        a00, a01 = self.emit("Mul", [c, sx]), self.emit("Mul", [s, sy])
        a10, a11 = self.emit("Mul", [minus_s, sx]), self.emit("Mul", [c, sy])
        half = self.floats([ow / 2.0, oh / 2.0])
        linear = self.emit("Concat", [a00, a01, a10, a11], axis=1)
        shift = self.emit("MatMul", [self.emit("Reshape", [linear, self.ints([-1, 2, 2])]), self.emit("Reshape", [half, self.ints([2, 1])])])
        t_xy = self.emit("Sub", [centre, self.emit("Reshape", [shift, self.ints([-1, 2])])])
        t0, t1 = self.slice(t_xy, 0, 1, axis=1), self.slice(t_xy, 1, 2, axis=1)
        zero = self.emit("Mul", [c, self.floats(0.0)])
        rows = self.emit("Concat", [a00, a01, zero, t0, a10, a11, zero, t1], axis=1)                     # (N, 8)
        tail = self.emit("Expand", [self.floats([[0, 0, 1, 0, 0, 0, 0, 1]]), self.emit("Shape", [rows])])
        return self.emit("Reshape", [self.emit("Concat", [rows, tail], axis=1), self.ints([-1, 4, 4])], output)

    def affine(self, matrix: str) -> str:
        """(N, 2, 3): a 4 x 4 matrix's x and y rows at the x, y and constant columns (points lie at z = 0)."""
        return self.take(self.slice(matrix, 0, 2, axis=1), [0, 1, 3], axis=2)

    def transform_tensor(self, features: str, in_hw: list[int], matrix: str, out_hw: tuple[int, int], output: str) -> str:
        """MediaPipe's TransformTensorBilinear v2: sample (N, C, H, W) features at the matrix's image of
        each output pixel centre (its pixel corners at half-integers), bilinearly; a sample whose
        point falls outside the features' pixel centres is zero."""
        oh, ow = out_hw
        y, x = np.mgrid[0:oh, 0:ow]
        centres = np.stack([x.ravel() + 0.5, y.ravel() + 0.5, np.ones(oh * ow)]).astype(np.float32)   # (3, P)
        at = self.emit("Sub", [self.emit("MatMul", [self.affine(matrix), self.const(centres, "centres")]),
                               self.floats(0.5)])                                                          # (N, 2, P)
        last = self.floats(np.array([in_hw[1] - 1, in_hw[0] - 1], np.float32).reshape(1, 2, 1))
        inside = self.emit("And", [self.emit("GreaterOrEqual", [at, self.floats(0.0)]), self.emit("LessOrEqual", [at, last])])
        mask = self.emit("ReduceMin", [self.emit("Cast", [inside], to=TensorProto.FLOAT)], axes=[1], keepdims=1)
        grid = self.emit("Sub", [self.emit("Div", [self.emit("Mul", [at, self.floats(2.0)]), last]), self.floats(1.0)])
        grid = self.emit("Reshape", [self.emit("Transpose", [grid], perm=[0, 2, 1]), self.ints([-1, oh, ow, 2])])
        sampled = self.emit("GridSample", [features, grid], align_corners=1, mode="bilinear", padding_mode="zeros")
        return self.emit("Mul", [sampled, self.emit("Reshape", [mask, self.ints([-1, 1, oh, ow])])], output)

    def transform_points(self, points: str, matrix: str, output: str) -> str:
        """MediaPipe's TransformLandmarks v2 on (N, K, 2) points: p -> A p + t."""
        affine = self.affine(matrix)
        linear = self.emit("Transpose", [self.slice(affine, 0, 2, axis=2)], perm=[0, 2, 1])
        shift = self.emit("Transpose", [self.slice(affine, 2, 3, axis=2)], perm=[0, 2, 1])
        return self.emit("Add", [self.emit("MatMul", [points, linear]), shift], output)


def tflite_reference(tflite_path: Path, crops: list[np.ndarray]) -> list[tuple[np.ndarray, float]]:
    """The TFLite interpreter's (points (468, 3), face-flag logit) for each crop."""
    from ai_edge_litert.interpreter import Interpreter
    interp = Interpreter(model_path=str(tflite_path))
    interp.allocate_tensors()
    (inp,) = interp.get_input_details()
    outs = interp.get_output_details()
    result = []
    for crop in crops:
        interp.set_tensor(inp["index"], crop[None])
        interp.invoke()
        mesh, flag = (interp.get_tensor(o["index"]).ravel() for o in outs)
        result.append((mesh.reshape(-1, 3), float(flag[0])))
    return result


MEDIAPIPE_GRAPH = """
input_stream: "image"
output_stream: "raw"
output_stream: "refined"
node { calculator: "ImageToTensorCalculator" input_stream: "IMAGE:image" output_stream: "TENSORS:input"
  options { [mediapipe.ImageToTensorCalculatorOptions.ext] { output_tensor_width: 192 output_tensor_height: 192
    output_tensor_float_range { min: 0 max: 1 } } } }
node { calculator: "TfLiteCustomOpResolverCalculator" output_side_packet: "OP_RESOLVER:op_resolver" }
node { calculator: "InferenceCalculatorCpu" input_stream: "TENSORS:input" output_stream: "TENSORS:output"
  input_side_packet: "OP_RESOLVER:op_resolver"
  options { [mediapipe.InferenceCalculatorOptions.ext] { model_path: "%s" } } }
node { calculator: "SplitTensorVectorCalculator" input_stream: "output" output_stream: "points" output_stream: "flag"
  options { [mediapipe.SplitVectorCalculatorOptions.ext] { ranges: { begin: 0 end: 6 } ranges: { begin: 6 end: 7 } } } }
node { calculator: "TensorsToFloatsCalculator" input_stream: "TENSORS:flag" output_stream: "FLOATS:raw" }
node { calculator: "TensorsToFaceLandmarksWithAttention" input_stream: "TENSORS:points" output_stream: "LANDMARKS:refined" }
"""


def mediapipe_reference(tflite_path: Path, crops: list[np.ndarray]) -> list[tuple[np.ndarray, float]]:
    """MediaPipe's own graph (its custom ops, its refinement calculator): (points (478, 3) in crop
    pixels, face-flag logit) for each crop."""
    import mediapipe as mp
    from google.protobuf import text_format
    from mediapipe.framework import calculator_pb2
    config = text_format.Parse(MEDIAPIPE_GRAPH % tflite_path.resolve(), calculator_pb2.CalculatorGraphConfig())
    graph = mp.CalculatorGraph(graph_config=config)
    flags: dict[int, float] = {}
    points: dict[int, np.ndarray] = {}
    graph.observe_output_stream("raw", lambda _, p: flags.__setitem__(p.timestamp.value, mp.packet_getter.get_float_list(p)[0]))
    graph.observe_output_stream("refined", lambda _, p: points.__setitem__(
        p.timestamp.value, np.array([[q.x, q.y, q.z] for q in mp.packet_getter.get_proto(p).landmark])))
    graph.start_run({})
    for i, crop in enumerate(crops):
        frame = np.ascontiguousarray(np.round(crop * 255).astype(np.uint8))
        graph.add_packet_to_input_stream("image", mp.packet_creator.create_image_frame(
            image_format=mp.ImageFormat.SRGB, data=frame).at(i))
    graph.close()
    return [(points[i] * 192.0, flags[i]) for i in range(len(crops))]  # normalised by the 192 px input


def check(onnx_path: Path, reference: list[tuple[np.ndarray, float]], crops: list[np.ndarray]) -> float:
    """Largest landmark difference in px between ONNX Runtime and the reference."""
    import onnxruntime as ort
    session = ort.InferenceSession(str(onnx_path), providers=["CPUExecutionProvider"])
    worst = 0.0
    for crop, (expected, flag) in zip(crops, reference):
        got, got_flag = session.run(None, {"image": crop.transpose(2, 0, 1)[None]})
        worst = max(worst, float(np.abs(got[0].reshape(-1, 3) - expected).max()))
        if abs(float(got_flag[0, 0]) - flag) > 1e-3:
            raise RuntimeError("face flag differs")
    return worst


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("tflite", type=Path, help="face_landmark.tflite or face_landmark_with_attention.tflite "
                                                  "from the mediapipe 0.10.21 wheel")
    parser.add_argument("--photos", type=Path, nargs="*", default=[],
                        help="real photos; their centre 192 px crops join the random ones in the check")
    parser.add_argument("-o", "--out", type=Path, help="default: facerecon/data/" + " or ".join(OUT_NAMES.values()))
    args = parser.parse_args()
    if args.tflite.stem not in OUT_NAMES:
        print(f"error: expected one of {', '.join(n + '.tflite' for n in OUT_NAMES)}, got {args.tflite.name}", file=sys.stderr)
        return 1
    out = args.out or DATA / OUT_NAMES[args.tflite.stem]
    model = tflite.Model.GetRootAsModel(args.tflite.read_bytes(), 0)
    attention = args.tflite.stem == "face_landmark_with_attention"
    converted = Converter(model).convert()
    tmp = out.with_suffix(".tmp.onnx")
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
    if attention:  # MediaPipe's graph takes 8-bit images
        crops = [np.round(c * 255).astype(np.float32) / 255.0 for c in crops]
    reference = (mediapipe_reference if attention else tflite_reference)(args.tflite, crops)
    worst = check(tmp, reference, crops)
    print(f"max landmark difference vs {'MediaPipe' if attention else 'TFLite'}: {worst:.2e} px over {len(crops)} crops")
    if worst > TOLERANCE_PX:
        tmp.unlink()
        print(f"error: difference above {TOLERANCE_PX} px; not written", file=sys.stderr)
        return 1
    tmp.replace(out)
    print(f"wrote {out} ({out.stat().st_size / 1e6:.2f} MB)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
