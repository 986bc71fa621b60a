"""Keep the INT8 layers that cost the most accuracy in float, until the drop fits.

Keeping a layer in float in a Q/DQ model takes more than ``nodes_to_exclude``: ONNX
Runtime (1.2x's ``WeightBiasQuantization`` transformer) quantizes the float weights of a
Conv/Gemm whose input comes from a DequantizeLinear -- per tensor, worse than the
per-channel weights it replaced. Measured: "excluded" convs were still QLinearConv after
optimisation. :func:`keep_float` therefore edits the quantized graph: the node gets its
original float weights and bias back and reads the float activations from before their
QuantizeLinear, so no Q/DQ pattern is left around it. (Its producer then also runs in
float: its output feeds a float consumer.)

The sensitivity pass: quantize once, then for each candidate layer (Conv, MatMul, Gemm
and the residual Add) build the model with only that layer in float and measure how much
closer its outputs get to the FP32 model's on calibration images (mean KL divergence of
the softmax; no labels needed). Candidates are ranked by that gain; layers are then put
back into float in that order until the accuracy drop on the validation images fits the
limit, or the budget of float layers is spent.
"""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np

from edgeft.parity import batches_of, fold_input
from exporters.onnx_fp16 import topological_sort

CANDIDATE_OPS = ("Conv", "MatMul", "Gemm", "Add")


def _producers(graph) -> dict:
    return {out: n for n in graph.node for out in n.output}


def keep_float(qmodel, fp32_model, names) -> object:
    """A copy of Q/DQ model ``qmodel`` where the nodes named ``names`` run in float.

    Args:
        qmodel: the quantized ``onnx.ModelProto``.
        fp32_model: the FP32 model it was quantized from (node names are shared).
        names: node names to keep in float.
    """
    import onnx

    model = onnx.ModelProto()
    model.CopyFrom(qmodel)
    g = model.graph
    names = set(names)
    producer = _producers(g)
    inits = {t.name for t in g.initializer}
    fp_nodes = {n.name: n for n in fp32_model.graph.node}
    fp_inits = {t.name: t for t in fp32_model.graph.initializer}
    restored: dict[str, str] = {}
    for node in list(g.node):
        if node.name not in names:
            continue
        original = fp_nodes.get(node.name)
        for i, name in enumerate(node.input):
            dq = producer.get(name)
            if dq is None or dq.op_type != "DequantizeLinear":
                continue
            src = dq.input[0]
            if src in inits or producer.get(src) is None:
                # A quantized weight or bias: take the float tensor back from the FP32 model.
                if (
                    original is not None
                    and i < len(original.input)
                    and original.input[i] in fp_inits
                ):
                    fname = original.input[i]
                    # ONNX Runtime may give the DequantizeLinear output the float tensor's name.
                    new = (
                        fname if fname not in producer and fname not in inits else f"{fname}.float"
                    )
                    if new not in inits:
                        tensor = onnx.TensorProto()
                        tensor.CopyFrom(fp_inits[fname])
                        tensor.name = new
                        g.initializer.append(tensor)
                        inits.add(new)
                    node.input[i] = new
            elif producer[src].op_type == "QuantizeLinear":
                t = producer[src].input[0]  # the float activation before Q
                node.input[i] = _restore_activation(g, fp32_model, t, producer, restored)
    _drop_dead(model)
    topological_sort(g)
    return model


ACTIVATIONS = ("Clip", "Relu")


def _restore_activation(g, fp32_model, t: str, producer: dict, restored: dict) -> str:
    """The float tensor a float node must read in place of ``t``.

    ONNX Runtime's quantizer removes a Clip/Relu that follows a Conv and lets the
    QuantizeLinear's range do the clamping (the Conv then writes the Clip's output name).
    A node that reads ``t`` in float, bypassing that Q, needs the activation back.
    """
    import onnx
    from onnx import numpy_helper

    fp_prod = {out: n for n in fp32_model.graph.node for out in n.output}.get(t)
    q_prod = producer.get(t)
    if (
        fp_prod is None
        or fp_prod.op_type not in ACTIVATIONS
        or (q_prod is not None and q_prod.op_type == fp_prod.op_type)
    ):
        return t
    if t in restored:
        return restored[t]
    inits = {x.name for x in g.initializer}
    fp_inits = {x.name: x for x in fp32_model.graph.initializer}
    fp_consts = {n.output[0]: n for n in fp32_model.graph.node if n.op_type == "Constant"}
    for name in fp_prod.input[1:]:
        if not name or name in inits:
            continue
        if name in fp_inits:
            g.initializer.append(fp_inits[name])
        elif name in fp_consts:
            value = onnx.helper.get_attribute_value(fp_consts[name].attribute[0])
            g.initializer.append(numpy_helper.from_array(numpy_helper.to_array(value), name))
        inits.add(name)
    out = f"{t}.float"
    act = onnx.NodeProto()
    act.CopyFrom(fp_prod)
    act.name = f"{fp_prod.name}.float"
    act.input[0] = t
    del act.output[:]
    act.output.append(out)
    g.node.append(act)
    restored[t] = out
    return out


def _drop_dead(model) -> None:
    """Remove Q/DQ nodes and initializers nothing reads any more."""
    g = model.graph
    outputs = {o.name for o in g.output}
    while True:
        used = {i for n in g.node for i in n.input} | outputs
        dead = [
            n
            for n in g.node
            if n.op_type in ("QuantizeLinear", "DequantizeLinear")
            and not any(o in used for o in n.output)
        ]
        if not dead:
            break
        for n in dead:
            g.node.remove(n)
    used = {i for n in g.node for i in n.input}
    keep = [t for t in g.initializer if t.name in used]
    del g.initializer[:]
    g.initializer.extend(keep)


def candidates(qmodel) -> list[str]:
    """Names of quantized nodes that can be put back into float, in graph order."""
    producer = _producers(qmodel.graph)
    out = []
    for n in qmodel.graph.node:
        if n.op_type in CANDIDATE_OPS and any(
            (p := producer.get(i)) is not None and p.op_type == "DequantizeLinear" for i in n.input
        ):
            out.append(n.name)
    return out


def default_budget(n_candidates: int) -> int:
    """How many layers may fall back to float by default: a fifth, at least 3."""
    return max(3, math.ceil(0.2 * n_candidates))


def _session(model, threads: int | None, optimize: bool = True):
    import onnxruntime as ort

    so = ort.SessionOptions()
    # optimize=False runs the Q/DQ graph as written: quantize-dequantize simulated in float,
    # the arithmetic a Q/DQ-aware compiler such as TensorRT reproduces (its int32
    # accumulation is exact); on x86 without VNNI ONNX Runtime's fused int8 kernels would
    # add their own saturation error, which TensorRT does not have.
    so.graph_optimization_level = (
        ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        if optimize
        else ort.GraphOptimizationLevel.ORT_DISABLE_ALL
    )
    so.log_severity_level = 3
    if threads:
        so.intra_op_num_threads = threads
    return ort.InferenceSession(model.SerializeToString(), so, providers=["CPUExecutionProvider"])


def run_model(
    model, x, batch: int = 32, threads: int | None = None, optimize: bool = True, fold_pp=None
) -> np.ndarray:
    """Outputs of an in-memory ONNX model over ``x`` (an array, or labelled images streamed
    in batches) with ONNX Runtime on the CPU (``optimize=False``: Q/DQ simulated in float,
    see :func:`_session`). ``fold_pp``: the graph takes 0..1 input, converted from the
    normalised images with that contract."""
    sess = _session(model, threads, optimize)
    name = sess.get_inputs()[0].name
    outs = [
        sess.run(None, {name: fold_input(b, fold_pp) if fold_pp is not None else b})[0]
        for b in batches_of(x, batch)
    ]
    return np.concatenate(outs)


def _log_softmax(z: np.ndarray) -> np.ndarray:
    z = z.astype(np.float64)
    z = z - z.max(1, keepdims=True)
    return z - np.log(np.exp(z).sum(1, keepdims=True))


def kl_to_reference(ref_logits: np.ndarray, logits: np.ndarray, probs: bool = False) -> float:
    """Mean KL(reference || model) of the class distributions (``probs``: both outputs are
    probabilities already)."""
    if probs:  # a graph ending in softmax: both are already probabilities
        lp = np.log(np.clip(ref_logits.astype(np.float64), 1e-12, None))
        lq = np.log(np.clip(logits.astype(np.float64), 1e-12, None))
    else:
        lp, lq = _log_softmax(ref_logits), _log_softmax(logits)
    return float(np.mean(np.sum(np.exp(lp) * (lp - lq), axis=1)))


def sensitivity(
    qmodel,
    fp32_model,
    x: np.ndarray,
    ref: np.ndarray,
    probs: bool = False,
    threads: int | None = None,
    progress=None,
    optimize: bool = True,
) -> tuple[float, list[dict]]:
    """Rank the candidates by how much keeping each one alone in float helps.

    Args:
        x: calibration inputs (as the model takes them); ``ref``: the FP32 model's outputs.

    Returns:
        ``(kl_all_int8, rows)``; rows ``{"node", "op", "kl", "gain"}`` sorted by gain, best first.
    """
    ops = {n.name: n.op_type for n in qmodel.graph.node}
    base = kl_to_reference(ref, run_model(qmodel, x, threads=threads, optimize=optimize), probs)
    rows = []
    for name in candidates(qmodel):
        variant = keep_float(qmodel, fp32_model, [name])
        kl = kl_to_reference(ref, run_model(variant, x, threads=threads, optimize=optimize), probs)
        rows.append({"node": name, "op": ops[name], "kl": kl, "gain": base - kl})
        if progress:
            progress()
    rows.sort(key=lambda r: -r["gain"])
    return base, rows


def fall_back(qmodel, fp32_model, ranked: list[dict], evaluate, budget: int) -> dict:
    """Put ranked layers back into float, best first, until ``evaluate(model)`` passes or
    ``budget`` layers are in float.

    Args:
        evaluate: ``model -> (passes, accuracy_drop_pp, agreement)``.

    Returns:
        ``{"model", "float_nodes", "passes", "steps": [{"float_nodes", "node", "drop_pp", "agreement"}]}``.
    """
    kept: list[str] = []
    model = qmodel
    ok, drop, agree = evaluate(model)
    steps = [{"float_nodes": 0, "node": None, "drop_pp": drop, "agreement": agree}]
    for row in (r for r in ranked if r["gain"] > 0):
        if ok or len(kept) >= budget:
            break
        kept.append(row["node"])
        model = keep_float(qmodel, fp32_model, kept)
        ok, drop, agree = evaluate(model)
        steps.append(
            {"float_nodes": len(kept), "node": row["node"], "drop_pp": drop, "agreement": agree}
        )
    return {"model": model, "float_nodes": kept, "passes": ok, "steps": steps}


def save_model(model, path) -> Path:
    """Check and save an ONNX model."""
    import onnx

    onnx.checker.check_model(model)
    onnx.save(model, str(path))
    return Path(path)
