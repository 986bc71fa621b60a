"""PyTorch model -> a checked, simplified FP32 ONNX file that carries its own contract.

Exporter choice: ``torch.onnx.export(..., dynamo=False)`` (the TorchScript exporter), passed
explicitly. Measured on the EuroSAT MobileNetV2 bundle with torch 2.13:

* it writes exactly the requested opset (17 by default); ``dynamo=True`` has no
  implementations below opset 18, its down-conversion to 17 failed
  (``axes_input_to_attribute`` assertion) and it silently kept opset 18;
* its graph is the plain Conv/Clip/Add/MatMul graph ONNX Runtime's quantizer and
  TensorRT's parser handle (52 Conv, no BatchNormalization left in the body), and it
  exports in about 2 s against about 20 s for the dynamo exporter.

The TorchScript exporter is deprecated upstream (torch prints so); when it is removed,
:data:`DYNAMO` is the one switch to flip, with ``--opset 18`` as the new default.

Conv + BatchNorm pairs are folded in float64 before export (rounded to float32 once):
the exporter's own folding in float32 doubled the largest logit difference to PyTorch
(9.7e-5 against 4.2e-5 on 400 validation images, logits up to 25), close to the 1e-4
parity limit.
"""

from __future__ import annotations

import contextlib
import copy
import io
import json
import time
import warnings
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

from edgeft.console import console
from edgeft.errors import UserError
from exporters.request import BuildResult

DYNAMO = False  # see the module docstring
DEFAULT_OPSET = 17
MIN_OPSET = 11  # Clip with min/max inputs, dynamic batch through Flatten/Reshape
INPUT_NAME = "input"


def exporter_opset_range() -> tuple[int, int]:
    """The opsets the installed torch exporter (:data:`DYNAMO` mode) and onnx can write."""
    import onnx
    import torch.onnx._constants as c

    top = getattr(c, "ONNX_TORCHSCRIPT_EXPORTER_MAX_OPSET", None) or c.ONNX_MAX_OPSET
    if DYNAMO:
        top = c.ONNX_MAX_OPSET
    return max(MIN_OPSET, 18 if DYNAMO else MIN_OPSET), min(
        int(top), onnx.defs.onnx_opset_version()
    )


def check_opset(opset: int) -> None:
    """Refuse an opset the installed exporter cannot write, before any work is done.

    Raises:
        UserError: ``opset`` is outside :func:`exporter_opset_range`.
    """
    import torch

    lo, hi = exporter_opset_range()
    if not lo <= opset <= hi:
        raise UserError(
            f"--opset {opset} cannot be produced here: torch {torch.__version__}'s ONNX exporter "
            f"writes opsets {lo}-{hi} for edgeft's models; pick one in that range (default {DEFAULT_OPSET})"
        )


def fold_conv_bn_float64(model):
    """A copy of ``model`` with each ``Conv2d`` directly followed by ``BatchNorm2d`` inside an
    ``nn.Sequential`` fused into one conv, computed in float64 and rounded once.

    Only pairs inside a Sequential are fused (there the order is certain); any other BN is
    left to the exporter's own folding. Returns ``(model, pairs_folded)``.
    """
    import torch
    from torch import nn

    model = copy.deepcopy(model).eval()
    folded = 0
    for module in list(model.modules()):
        if not isinstance(module, nn.Sequential):
            continue
        names = list(module._modules)
        for a, b in zip(names, names[1:], strict=False):
            conv, bn = module._modules[a], module._modules[b]
            if not (isinstance(conv, nn.Conv2d) and isinstance(bn, nn.BatchNorm2d)):
                continue
            if bn.running_mean is None or not bn.track_running_stats:
                continue
            w = conv.weight.detach().double()
            bias = (
                conv.bias.detach().double()
                if conv.bias is not None
                else torch.zeros(w.shape[0], dtype=torch.float64)
            )
            scale = bn.weight.detach().double() / torch.sqrt(bn.running_var.double() + bn.eps)
            fused = nn.Conv2d(
                conv.in_channels,
                conv.out_channels,
                conv.kernel_size,
                conv.stride,
                conv.padding,
                conv.dilation,
                conv.groups,
                bias=True,
                padding_mode=conv.padding_mode,
            )
            with torch.no_grad():
                fused.weight.copy_((w * scale.view(-1, 1, 1, 1)).float())
                fused.bias.copy_(
                    ((bias - bn.running_mean.double()) * scale + bn.bias.detach().double()).float()
                )
            module._modules[a] = fused.eval()
            module._modules[b] = nn.Identity()
            folded += 1
    return model, folded


def _wrap(model, pp, fold_normalize: bool, softmax: bool):
    """The exported module: optional (x - mean) / std in front, optional softmax behind."""
    import torch
    from torch import nn

    class Exported(nn.Module):
        def __init__(self):
            super().__init__()
            self.model = model
            self.fold = fold_normalize
            self.softmax = softmax
            self.register_buffer(
                "mean", torch.tensor(pp.mean, dtype=torch.float32).view(1, 3, 1, 1)
            )
            self.register_buffer("std", torch.tensor(pp.std, dtype=torch.float32).view(1, 3, 1, 1))

        def forward(self, x):
            if self.fold:
                # Same operations and order as edgeft.preprocess: subtract, then divide.
                x = (x - self.mean) / self.std
            y = self.model(x)
            return torch.softmax(y, dim=1) if self.softmax else y

    return Exported().eval()


def set_metadata(model_proto, props: dict) -> None:
    """Replace ``metadata_props`` with ``props`` (values JSON-encoded unless strings)."""
    del model_proto.metadata_props[:]
    for key, value in props.items():
        entry = model_proto.metadata_props.add()
        entry.key = key
        entry.value = value if isinstance(value, str) else json.dumps(value)


def read_metadata(path) -> dict:
    """``metadata_props`` of an ONNX file as a dict (JSON values decoded)."""
    import onnx

    out = {}
    for p in onnx.load(str(path), load_external_data=False).metadata_props:
        try:
            out[p.key] = json.loads(p.value)
        except ValueError:
            out[p.key] = p.value
    return out


def export_onnx(
    model,
    pp,
    labels: list[str],
    out_path,
    *,
    opset: int = DEFAULT_OPSET,
    fold_normalize: bool = False,
    softmax: bool = False,
    simplify: bool = True,
    metadata: dict | None = None,
) -> dict:
    """Export ``model`` (an eval-mode ``nn.Module`` taking normalised NCHW) to ``out_path``.

    Args:
        model, pp, labels: the bundle's ``nn.Sequential(body, head)``, preprocessing contract
            and class names (the last two are stamped into the file's metadata).
        out_path: where to write (the caller renames it into place).
        opset: ONNX opset (checked with :func:`check_opset`).
        fold_normalize: put ``(x - mean) / std`` in the graph: the input is then RGB in 0..1.
        softmax: append a softmax; the output is then ``probs`` instead of ``logits``.
        simplify, metadata: run onnxslim; extra ``metadata_props`` entries.

    Returns:
        What was done: exporter, opset, names, node counts, BN pairs folded, warnings.
        Raises :class:`UserError` when the opset is out of range or the exporter fails.
    """
    import onnx

    check_opset(opset)
    out_name = "probs" if softmax else "logits"
    fused, pairs = fold_conv_bn_float64(model)
    raw, caught = _trace(_wrap(fused, pp, fold_normalize, softmax), pp, opset, out_name)
    proto = onnx.load_from_string(raw)
    nodes_before = len(proto.graph.node)
    proto = _slim(proto) if simplify else proto
    got = {o.domain or "ai.onnx": o.version for o in proto.opset_import}.get("ai.onnx")
    if got != opset:
        raise UserError(
            f"the exporter wrote opset {got} when {opset} was asked: pick another --opset"
        )
    _stamp(proto, pp, labels, out_name, fold_normalize, metadata)
    onnx.checker.check_model(proto, full_check=True)
    onnx.save(proto, str(Path(out_path)))
    ops = Counter(n.op_type for n in proto.graph.node)
    return {
        "exporter": f"torch.onnx.export(dynamo={DYNAMO})",
        "opset": opset,
        "input": INPUT_NAME,
        "output": out_name,
        "dynamic_axes": {"batch": 0},
        "conv_bn_folded_float64": pairs,
        "simplified": "onnxslim" if simplify else None,
        "nodes": {"exported": nodes_before, "final": len(proto.graph.node)},
        "ops": dict(sorted(ops.items())),
        "exporter_warnings": sorted({str(w.message).splitlines()[0][:160] for w in caught}),
    }


def _slim(proto):
    """onnxslim: constant folding and dead-node removal (quietly: it prints a summary)."""
    import onnxslim

    with contextlib.redirect_stdout(io.StringIO()):
        return onnxslim.slim(proto)


def _trace(wrapped, pp, opset: int, out_name: str) -> tuple[bytes, list]:
    """``torch.onnx.export`` into memory; its warnings are kept for the record."""
    import torch

    dummy = torch.zeros(1, 3, *pp.size)
    buf = io.BytesIO()
    with warnings.catch_warnings(record=True) as caught, contextlib.redirect_stdout(io.StringIO()):
        warnings.simplefilter("always")
        try:
            torch.onnx.export(
                wrapped,
                (dummy,),
                buf,
                dynamo=DYNAMO,
                opset_version=opset,
                input_names=[INPUT_NAME],
                output_names=[out_name],
                do_constant_folding=True,
                dynamic_axes={INPUT_NAME: {0: "batch"}, out_name: {0: "batch"}},
            )
        except Exception as exc:  # the exporter raises many types; one line for the user
            first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
            raise UserError(f"torch.onnx.export failed at opset {opset}: {first[:300]}") from None
    return buf.getvalue(), list(caught)


def _stamp(proto, pp, labels, out_name: str, fold_normalize: bool, metadata: dict | None) -> None:
    """Labels, the preprocessing contract and the output kind in the file's metadata."""
    h, w = pp.size
    contract = pp.folded() if fold_normalize else pp
    props = {
        "edgeft.labels": list(labels),
        "edgeft.preprocessing": contract.to_dict(),
        "edgeft.output": out_name,
        "edgeft.normalize_in_graph": fold_normalize,
        "edgeft.input": f"{INPUT_NAME}: float32 [batch, 3, {h}, {w}], RGB, "
        + ("0..1 (normalisation in graph)" if fold_normalize else "normalised with mean/std"),
    }
    props.update(metadata or {})
    set_metadata(proto, props)
    proto.doc_string = f"edgeft classifier: {len(labels)} classes, output {out_name}"


@dataclass
class Options:
    """What :func:`build` takes from ``edgeft export``'s options."""

    opset: int = DEFAULT_OPSET
    fold_normalize: bool = False
    softmax: bool = False


def preflight(options: Options) -> None:
    """Refuse an opset this torch cannot write, before any work."""
    check_opset(options.opset)


def build(req) -> BuildResult:
    """Leaf exporter of ``onnx`` / ``onnx-folded``: the PyTorch model to an FP32 ONNX file."""

    o = req.options
    t0 = time.perf_counter()
    build_info = export_onnx(
        req.model(),
        req.pp,
        list(req.labels),
        req.out,
        opset=o.opset,
        fold_normalize=o.fold_normalize,
        softmax=o.softmax,
        metadata=req.metadata,
    )
    console().print(f"exporting {req.fmt.name} (opset {o.opset}): {time.perf_counter() - t0:.1f} s")
    target = {
        "runtime": "any ONNX runtime (checked with onnxruntime, CPUExecutionProvider)",
        "input": "RGB 0..1 (mean/std in the graph)"
        if o.fold_normalize
        else "RGB normalised with mean/std",
    }
    return BuildResult(build=build_info, target=target)
