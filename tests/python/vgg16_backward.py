"""An independent reference for class attribution on an ONNX CNN: numpy
(float64) runs the model file's own graph node by node, then goes back from
one logit through every node by hand-written rules, for the gradient
(saliency) and for guided backpropagation. Nothing here comes from Fovea.

usage: vgg16_backward.py MODEL INPUT.f32 SIZE CLASS OUT_PREFIX
INPUT.f32 holds the model input (NHWC, float32, 1 x SIZE x SIZE x 3); the
script writes OUT_PREFIX.saliency.f32 and OUT_PREFIX.guided.f32, each the
gradient at the input transposed to channels-first (3 x SIZE x SIZE), and
prints the logit."""

import sys

import numpy as np
import onnx
from onnx import numpy_helper


def attrs(node):
    return {a.name: onnx.helper.get_attribute_value(a) for a in node.attribute}


def conv(x, w, b, a):
    if tuple(a.get("strides", [1, 1])) != (1, 1) or tuple(a.get("dilations", [1, 1])) != (1, 1):
        raise SystemExit("only stride-1 undilated convolutions here")
    p = a.get("pads", [0, 0, 0, 0])
    _, c, h, wd = x.shape
    o, _, kh, kw = w.shape
    xp = np.pad(x[0], ((0, 0), (p[0], p[2]), (p[1], p[3])))
    oh, ow = xp.shape[1] - kh + 1, xp.shape[2] - kw + 1
    cols = np.empty((c, kh, kw, oh, ow))
    for i in range(kh):
        for j in range(kw):
            cols[:, i, j] = xp[:, i:i + oh, j:j + ow]
    out = w.reshape(o, -1) @ cols.reshape(c * kh * kw, -1)
    if b is not None:
        out += b[:, None]
    return out.reshape(1, o, oh, ow)


def conv_back(g, w, a, shape):
    p = a.get("pads", [0, 0, 0, 0])
    _, c, h, wd = shape
    o, _, kh, kw = w.shape
    _, _, oh, ow = g.shape
    cols = (w.reshape(o, -1).T @ g[0].reshape(o, -1)).reshape(c, kh, kw, oh, ow)
    dx = np.zeros((c, h + p[0] + p[2], wd + p[1] + p[3]))
    for i in range(kh):
        for j in range(kw):
            dx[:, i:i + oh, j:j + ow] += cols[:, i, j]
    return dx[None, :, p[0]:p[0] + h, p[1]:p[1] + wd]


def max_pool(x, a):
    k, s = a["kernel_shape"], a.get("strides", a["kernel_shape"])
    if list(k) != [2, 2] or list(s) != [2, 2]:
        raise SystemExit("only 2x2/2 pooling here")
    _, c, h, w = x.shape
    win = x[0, :, : h // 2 * 2, : w // 2 * 2].reshape(c, h // 2, 2, w // 2, 2).transpose(0, 1, 3, 2, 4)
    win = win.reshape(c, h // 2, w // 2, 4)
    arg = win.argmax(axis=-1)  # the first maximum, row-major in the window
    return np.take_along_axis(win, arg[..., None], -1)[..., 0][None], arg


def pool_back(g, arg, shape):
    _, c, h, w = shape
    dx = np.zeros((c, h // 2, w // 2, 4))
    np.put_along_axis(dx, arg[..., None], g[0][..., None], -1)
    dx = dx.reshape(c, h // 2, w // 2, 2, 2).transpose(0, 1, 3, 2, 4).reshape(c, h // 2 * 2, w // 2 * 2)
    out = np.zeros((c, h, w))
    out[:, : h // 2 * 2, : w // 2 * 2] = dx
    return out[None]


def main():
    model, input_path, size, klass, prefix = sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4]), sys.argv[5]
    g = onnx.load(model).graph
    const = {t.name: numpy_helper.to_array(t) for t in g.initializer}
    for n in g.node:
        if n.op_type == "Constant":
            const[n.output[0]] = numpy_helper.to_array(attrs(n)["value"])
    x = np.fromfile(input_path, dtype=np.float32).astype(np.float64).reshape(1, size, size, 3)
    val = {g.input[0].name: x}
    data = {g.input[0].name}  # tensors that depend on the image
    keep = {}
    nodes = [n for n in g.node if n.op_type != "Constant"]

    def get(name):
        return val[name] if name in val else const[name]

    for n in nodes:
        a, ins, op = attrs(n), [get(i) for i in n.input if i], n.op_type
        if op == "Transpose":
            out = np.transpose(ins[0], a["perm"])
        elif op == "Conv":
            out = conv(ins[0], ins[1].astype(np.float64), ins[2].astype(np.float64) if len(ins) > 2 else None, a)
        elif op == "Relu":
            out = np.maximum(ins[0], 0)
        elif op == "MaxPool":
            out, keep[n.name] = max_pool(ins[0], a)
        elif op == "Shape":
            out = np.array(ins[0].shape, dtype=np.int64)
        elif op == "Gather":
            out = np.take(ins[0], ins[1].astype(np.int64), axis=a.get("axis", 0))
        elif op == "Cast":
            out = ins[0]
        elif op == "Slice":
            out = ins[0][int(ins[1][0]):int(ins[2][0])]
        elif op == "Concat":
            out = np.concatenate([np.atleast_1d(v) for v in ins], axis=a["axis"])
        elif op == "Reshape":
            out = ins[0].reshape([int(d) for d in ins[1]])
        elif op in ("Flatten",):
            out = ins[0].reshape(ins[0].shape[0], -1)
        elif op == "MatMul":
            out = ins[0] @ ins[1].astype(np.float64)
        elif op == "Gemm":
            w = ins[1].astype(np.float64)
            out = ins[0] @ (w.T if a.get("transB", 0) else w) + (ins[2] if len(ins) > 2 else 0)
        elif op == "Add":
            out = ins[0] + ins[1]
        elif op == "Mul":
            out = ins[0] * ins[1]
        elif op == "Softmax":
            out = np.exp(ins[0] - ins[0].max()) / np.exp(ins[0] - ins[0].max()).sum()
        else:
            raise SystemExit(f"no rule for {op} ({n.name})")
        val[n.output[0]] = out
        if op not in ("Shape",) and any(i in data for i in n.input):
            data.add(n.output[0])

    softmax = [n for n in nodes if n.op_type == "Softmax"][-1]
    logits = softmax.input[0]
    print(f"logit {val[logits][0, klass]:.6f}")
    for rule in ("saliency", "guided"):
        grad = {logits: np.zeros_like(val[logits])}
        grad[logits][0, klass] = 1.0
        for n in reversed(nodes):
            out = n.output[0]
            if out not in grad or n.op_type == "Softmax":
                continue
            gout, op, a = grad.pop(out), n.op_type, attrs(n)
            xs = [i for i in n.input if i in data]
            if not xs:
                continue
            xin = xs[0]
            if op == "Transpose":
                back = np.transpose(gout, np.argsort(a["perm"]))
            elif op == "Conv":
                back = conv_back(gout, get(n.input[1]).astype(np.float64), a, val[xin].shape)
            elif op == "Relu":
                on = val[xin] > 0
                back = (np.maximum(gout, 0) if rule == "guided" else gout) * on
            elif op == "MaxPool":
                back = pool_back(gout, keep[n.name], val[xin].shape)
            elif op in ("Reshape", "Flatten", "Cast"):
                back = gout.reshape(val[xin].shape)
            elif op == "MatMul":
                back = gout @ get(n.input[1]).astype(np.float64).T
            elif op == "Gemm":
                w = get(n.input[1]).astype(np.float64)
                back = gout @ (w if a.get("transB", 0) else w.T)
            elif op == "Add":
                back = gout
            elif op == "Mul":
                other = [i for i in n.input if i != xin][0]
                back = gout * get(other)
            else:
                raise SystemExit(f"no gradient rule for {op} ({n.name})")
            grad[xin] = grad.get(xin, 0) + back
        at_input = grad[g.input[0].name][0].transpose(2, 0, 1)
        at_input.astype(np.float32).tofile(f"{prefix}.{rule}.f32")


main()
