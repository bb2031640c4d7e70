"""Rebuild resources/models/*.onnx from MediaPipe's Face Mesh TFLite models (Apache-2.0).

Run once by a maintainer, never at run time:

    pip install tflite onnx flatbuffers numpy          # a venv without mediapipe: onnx wants protobuf >= 6
    python tools/convert_facemesh.py --tflite-dir DIR --out resources/models

DIR holds face_detection_short_range.tflite, face_detection_full_range_sparse.tflite and
face_landmark_with_attention.tflite, as shipped in the mediapipe 0.10.21 wheel under
mediapipe/modules/. The graphs use a handful of
builtin ops, translated one by one to ONNX (activations in NCHW). The attention model's
three MediaPipe custom ops (Landmarks2TransformMatrix, TransformTensorBilinear,
TransformLandmarks) are not ONNX ops: the model is cut around them into
facemesh_landmarks.onnx (backbone: face image -> mesh, face flag, 48x48 feature map) and
facemesh_refine.onnx (three 16x16 feature crops -> lips, eyes, irises), and
core/prepare/tracking/facemesh.py does the crops and transforms between the two in numpy.
"""
from __future__ import annotations

import argparse
import hashlib
import json
from pathlib import Path

import numpy as np
import onnx
import tflite
from onnx import TensorProto, helper, numpy_helper

OPS = {v: k for k, v in tflite.BuiltinOperator.__dict__.items() if not k.startswith("_")}
DTYPES = {tflite.TensorType.FLOAT32: np.float32, tflite.TensorType.FLOAT16: np.float16,
          tflite.TensorType.INT32: np.int32, tflite.TensorType.INT64: np.int64}
ACT = {tflite.ActivationFunctionType.NONE: None, tflite.ActivationFunctionType.RELU: "Relu",
       tflite.ActivationFunctionType.RELU6: "Relu6"}


class Graph:
    """One TFLite subgraph, read into plain Python: tensors, constants and ops."""

    def __init__(self, path: Path) -> None:
        self.buf = path.read_bytes()
        self.m = tflite.Model.GetRootAsModel(self.buf, 0)
        self.g = self.m.Subgraphs(0)
        self.ops = []
        for i in range(self.g.OperatorsLength()):
            op = self.g.Operators(i)
            code = self.m.OperatorCodes(op.OpcodeIndex())
            name = code.CustomCode().decode() if code.CustomCode() else OPS[max(code.BuiltinCode(),
                                                                              code.DeprecatedBuiltinCode())]
            self.ops.append((name, op, [op.Inputs(j) for j in range(op.InputsLength())],
                             [op.Outputs(j) for j in range(op.OutputsLength())]))
        self.producer = {o: k for k, (_, _, _, outs) in enumerate(self.ops) for o in outs}

    def name(self, t: int) -> str:
        return self.g.Tensors(t).Name().decode()

    def shape(self, t: int) -> list[int]:
        return [int(v) for v in self.g.Tensors(t).ShapeAsNumpy()]

    def index(self, name: str) -> int:
        for t in range(self.g.TensorsLength()):
            if self.name(t) == name:
                return t
        raise KeyError(name)

    def const(self, t: int) -> np.ndarray | None:
        """A constant tensor's value in float32 (fp16 weights behind DEQUANTIZE folded in)."""
        k = self.producer.get(t)
        if k is not None:
            name, _, ins, _ = self.ops[k]
            if name == "DENSIFY":
                return self.dense(ins[0])
            return self.const(ins[0]).astype(np.float32) if name == "DEQUANTIZE" else None
        tensor = self.g.Tensors(t)
        data = self.m.Buffers(tensor.Buffer()).DataAsNumpy()
        if isinstance(data, int):
            return None
        return np.frombuffer(data.tobytes(), DTYPES[tensor.Type()]).reshape(self.shape(t))


    def dense(self, t: int) -> np.ndarray:
        """A sparse constant (CSR in its last dimension, dense before: what these files use) made dense."""
        tensor = self.g.Tensors(t)
        sp = tensor.Sparsity()
        shape = self.shape(t)
        dims = [sp.DimMetadata(k) for k in range(sp.DimMetadataLength())]
        order = list(sp.TraversalOrderAsNumpy())
        assert order == list(range(len(shape))) and sp.BlockMapLength() == 0, "only plain CSR is handled"
        assert all(d.Format() == tflite.DimensionType.DENSE for d in dims[:-1])
        assert dims[-1].Format() == tflite.DimensionType.SPARSE_CSR

        def vector(kind: int, table) -> np.ndarray:
            cls = {tflite.SparseIndexVector.Int32Vector: tflite.Int32Vector,
                   tflite.SparseIndexVector.Uint16Vector: tflite.Uint16Vector,
                   tflite.SparseIndexVector.Uint8Vector: tflite.Uint8Vector}[kind]
            v = cls()
            v.Init(table.Bytes, table.Pos)
            return v.ValuesAsNumpy().astype(np.int64)

        seg = vector(dims[-1].ArraySegmentsType(), dims[-1].ArraySegments())
        idx = vector(dims[-1].ArrayIndicesType(), dims[-1].ArrayIndices())
        data = self.m.Buffers(tensor.Buffer()).DataAsNumpy()
        values = np.frombuffer(data.tobytes(), DTYPES[tensor.Type()])
        out = np.zeros((int(np.prod(shape[:-1])), shape[-1]), values.dtype)
        rows = np.repeat(np.arange(len(seg) - 1), np.diff(seg))
        out[rows, idx] = values
        return out.reshape(shape)


def _same_pads(size: int, k: int, stride: int, dilation: int = 1) -> tuple[int, int]:
    """TFLite SAME padding: the extra pixel goes after."""
    out = -(-size // stride)
    total = max((out - 1) * stride + (k - 1) * dilation + 1 - size, 0)
    return total // 2, total - total // 2


def convert(src: Graph, inputs: list[str], outputs: list[str], graph_name: str) -> onnx.ModelProto:
    """The ops between `inputs` and `outputs` (TFLite tensor names) as an ONNX model.

    4-D activations are NCHW in ONNX (TFLite is NHWC); the model's 4-D inputs and outputs are NCHW too.
    """
    want = [src.index(n) for n in outputs]
    start = {src.index(n) for n in inputs}
    needed, stack = set(), list(want)
    while stack:                                   # ops the outputs depend on, stopping at the inputs
        t = stack.pop()
        if t in start or t not in src.producer or src.const(t) is not None:
            continue
        k = src.producer[t]
        if k not in needed:
            needed.add(k)
            stack.extend(src.ops[k][2])
    nodes, inits, names = [], [], {}

    def val(t: int) -> str:
        if t not in names:
            c = src.const(t)
            assert c is not None, f"tensor {src.name(t)} has no producer in the cut"
            names[t] = f"c{t}"
            inits.append(numpy_helper.from_array(c, names[t]))
        return names[t]

    def init(name: str, arr: np.ndarray) -> str:
        inits.append(numpy_helper.from_array(arr, name))
        return name

    for t in start:
        names[t] = src.name(t).replace("/", "_")
    for k in sorted(needed):
        name, op, ins, outs = src.ops[k]
        out = names.setdefault(outs[0], f"t{outs[0]}")
        if name == "DEQUANTIZE":
            continue
        if name in ("CONV_2D", "DEPTHWISE_CONV_2D"):
            if name == "CONV_2D":
                o = tflite.Conv2DOptions(); o.Init(op.BuiltinOptions().Bytes, op.BuiltinOptions().Pos)
                w = src.const(ins[1]).transpose(0, 3, 1, 2)                  # OHWI -> OIHW
                group = 1
            else:
                o = tflite.DepthwiseConv2DOptions(); o.Init(op.BuiltinOptions().Bytes, op.BuiltinOptions().Pos)
                w = src.const(ins[1]).transpose(3, 0, 1, 2)                  # 1HWC -> C1HW
                group = w.shape[0]
            h, wd = src.shape(ins[0])[1:3]
            kh, kw = w.shape[2:]
            ph = _same_pads(h, kh, o.StrideH()) if o.Padding() == tflite.Padding.SAME else (0, 0)
            pw = _same_pads(wd, kw, o.StrideW()) if o.Padding() == tflite.Padding.SAME else (0, 0)
            args = [val(ins[0]), init(f"w{k}", np.ascontiguousarray(w))]
            if len(ins) > 2 and ins[2] >= 0:
                args.append(init(f"b{k}", src.const(ins[2])))
            act = ACT[o.FusedActivationFunction()]
            conv_out = out if act is None else f"{out}_pre"
            nodes.append(helper.make_node("Conv", args, [conv_out], strides=[o.StrideH(), o.StrideW()],
                                          pads=[ph[0], pw[0], ph[1], pw[1]], group=group,
                                          kernel_shape=[kh, kw]))
            if act == "Relu":
                nodes.append(helper.make_node("Relu", [conv_out], [out]))
            elif act == "Relu6":
                nodes.append(helper.make_node("Clip", [conv_out, init(f"lo{k}", np.float32(0)),
                                                       init(f"hi{k}", np.float32(6))], [out]))
        elif name == "PRELU":
            slope = src.const(ins[1]).reshape(-1, 1, 1)                      # (1,1,C) -> (C,1,1)
            nodes.append(helper.make_node("PRelu", [val(ins[0]), init(f"a{k}", slope)], [out]))
        elif name == "RELU":
            nodes.append(helper.make_node("Relu", [val(ins[0])], [out]))
        elif name == "ADD":
            o = tflite.AddOptions(); o.Init(op.BuiltinOptions().Bytes, op.BuiltinOptions().Pos)
            act = ACT[o.FusedActivationFunction()]
            add_out = out if act is None else f"{out}_pre"
            nodes.append(helper.make_node("Add", [val(ins[0]), val(ins[1])], [add_out]))
            if act == "Relu":
                nodes.append(helper.make_node("Relu", [add_out], [out]))
            assert act in (None, "Relu")
        elif name == "MAX_POOL_2D":
            o = tflite.Pool2DOptions(); o.Init(op.BuiltinOptions().Bytes, op.BuiltinOptions().Pos)
            h, wd = src.shape(ins[0])[1:3]
            ph = _same_pads(h, o.FilterHeight(), o.StrideH()) if o.Padding() == tflite.Padding.SAME else (0, 0)
            pw = _same_pads(wd, o.FilterWidth(), o.StrideW()) if o.Padding() == tflite.Padding.SAME else (0, 0)
            nodes.append(helper.make_node("MaxPool", [val(ins[0])], [out],
                                          kernel_shape=[o.FilterHeight(), o.FilterWidth()],
                                          strides=[o.StrideH(), o.StrideW()], pads=[ph[0], pw[0], ph[1], pw[1]]))
        elif name == "PAD":
            p = src.const(ins[1]).astype(np.int64)                           # (4, 2) NHWC before/after
            p = p[[0, 3, 1, 2]]                                              # -> NCHW
            pads = np.concatenate([p[:, 0], p[:, 1]])
            nodes.append(helper.make_node("Pad", [val(ins[0]), init(f"p{k}", pads)], [out]))
        elif name == "RESHAPE":
            # Only flat heads here: NCHW (1, C, 1, 1) or NHWC-ordered maps are flattened in NHWC order.
            shape = src.shape(outs[0])
            tr = f"{out}_nhwc"
            nodes.append(helper.make_node("Transpose", [val(ins[0])], [tr], perm=[0, 2, 3, 1]))
            nodes.append(helper.make_node("Reshape", [tr, init(f"s{k}", np.array(shape, np.int64))], [out]))
        elif name == "RESIZE_BILINEAR":
            o = tflite.ResizeBilinearOptions(); o.Init(op.BuiltinOptions().Bytes, op.BuiltinOptions().Pos)
            mode = ("half_pixel" if o.HalfPixelCenters() else "align_corners" if o.AlignCorners() else "asymmetric")
            h, wd = src.shape(outs[0])[1:3]
            nodes.append(helper.make_node("Resize", [val(ins[0]), "", "", init(f"z{k}", np.array(
                [1, src.shape(ins[0])[3], h, wd], np.int64))], [out], mode="linear",
                coordinate_transformation_mode=mode))
        elif name == "DEPTH_TO_SPACE":
            o = tflite.DepthToSpaceOptions(); o.Init(op.BuiltinOptions().Bytes, op.BuiltinOptions().Pos)
            nodes.append(helper.make_node("DepthToSpace", [val(ins[0])], [out], blocksize=o.BlockSize(),
                                          mode="DCR"))       # TensorFlow's channel order
        elif name == "CONCATENATION":
            o = tflite.ConcatenationOptions(); o.Init(op.BuiltinOptions().Bytes, op.BuiltinOptions().Pos)
            rank = len(src.shape(outs[0]))
            axis = o.Axis() % rank
            if rank == 4:
                axis = [0, 2, 3, 1][axis]
            nodes.append(helper.make_node("Concat", [val(i) for i in ins], [out], axis=axis))
        else:
            raise NotImplementedError(f"op {name} ({src.name(outs[0])})")

    def vinfo(t: int) -> onnx.ValueInfoProto:
        shape = src.shape(t)
        if len(shape) == 4:
            shape = [shape[0], shape[3], shape[1], shape[2]]
        return helper.make_tensor_value_info(names[t], TensorProto.FLOAT, shape)

    g = helper.make_graph(nodes, graph_name, [vinfo(src.index(n)) for n in inputs],
                          [vinfo(t) for t in want], inits)
    # Rename outputs to their TFLite names so the runtime reads them by name.
    for o, t in zip(g.output, want):
        new = src.name(t).replace("/", "_")
        for node in g.node:
            node.output[:] = [new if x == o.name else x for x in node.output]
            node.input[:] = [new if x == o.name else x for x in node.input]
        o.name = new
    model = helper.make_model(g, opset_imports=[helper.make_opsetid("", 13)], producer_name="speech2lip")
    model.ir_version = 8
    onnx.checker.check_model(model)
    return model


def custom_options(src: Graph) -> dict:
    """The attention model's custom-op settings, read from the file (the runtime must match them)."""
    from flatbuffers import flexbuffers

    out = {"crops": []}
    for name, op, ins, outs in src.ops:
        if name == "Landmarks2TransformMatrix":
            o = flexbuffers.Loads(op.CustomOptionsAsNumpy().tobytes())
            out["crops"].append({k: o[k] for k in ("left_rotation_idx", "right_rotation_idx", "scale_x",
                                                   "scale_y", "output_width", "output_height",
                                                   "subset_idxs", "target_rotation_radians")})
        if name == "MUL":
            c = src.const(ins[1])
            key = "landmark_scale" if c.size == 1 else "matrix_scale"
            out[key] = c.reshape(-1).tolist() if c.size > 1 else float(c.reshape(-1)[0])
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--tflite-dir", type=Path, required=True)
    ap.add_argument("--out", type=Path, required=True)
    a = ap.parse_args()
    a.out.mkdir(parents=True, exist_ok=True)
    det = Graph(a.tflite_dir / "face_detection_short_range.tflite")
    far = Graph(a.tflite_dir / "face_detection_full_range_sparse.tflite")
    mesh = Graph(a.tflite_dir / "face_landmark_with_attention.tflite")
    feature = mesh.name(mesh.ops[[n for n, *_ in mesh.ops].index("TransformTensorBilinear")][2][0])
    crops = [mesh.name(outs[0]) for n, _, _, outs in mesh.ops if n == "TransformTensorBilinear"]
    heads = ["conv_lips", "conv_left_eye", "conv_left_iris", "conv_right_eye", "conv_right_iris"]
    models = {
        "facemesh_detector.onnx": convert(det, ["input"], ["regressors", "classificators"], "face_detector"),
        "facemesh_detector_far.onnx": convert(far, ["input_1"], ["Identity", "Identity_1"], "face_detector_far"),
        "facemesh_landmarks.onnx": convert(mesh, ["input_1"], ["output_mesh", "conv_faceflag", feature],
                                           "face_landmarks"),
        "facemesh_refine.onnx": convert(mesh, crops, heads, "face_refine"),
    }
    meta = {"feature": feature, "crops": crops, "heads": heads, **custom_options(mesh), "sha256": {}}
    for name, model in models.items():
        data = model.SerializeToString()
        (a.out / name).write_bytes(data)
        meta["sha256"][name] = hashlib.sha256(data).hexdigest()
    for name in ("face_detection_short_range.tflite", "face_detection_full_range_sparse.tflite",
                 "face_landmark_with_attention.tflite"):
        meta["sha256"][name] = hashlib.sha256((a.tflite_dir / name).read_bytes()).hexdigest()
    (a.out / "facemesh.json").write_text(json.dumps(meta, indent=1) + "\n")
    print("wrote", ", ".join(models), "and facemesh.json to", a.out)


if __name__ == "__main__":
    main()
