"""Make an FP16 ONNX file that carries its own precision, for strongly typed TensorRT builds.

TensorRT 11 and TensorRT-RTX take precision from the graph only, so FP16 means FP16
weights and activations in the ONNX file, with Cast nodes where FP32 meets FP16. The
conversion is ONNX Runtime's ``convert_float_to_float16`` (the same code as
``onnxconverter-common``'s float16 module, shipped inside ``onnxruntime``), with the
graph's inputs and outputs kept float32 so callers feed and read the same arrays as the
FP32 model.

That converter appends its Cast nodes at the end of the node list, which breaks the
topological order the ONNX spec requires (``onnx.checker`` rejects the file); the nodes
are re-sorted here before saving.
"""

from __future__ import annotations

import heapq
import os
from pathlib import Path


def _converter():
    try:
        from onnxruntime.transformers.float16 import convert_float_to_float16
    except ImportError:  # onnxruntime missing: the same converter lives in onnxconverter-common
        from onnxconverter_common.float16 import convert_float_to_float16
    return convert_float_to_float16


def topological_sort(graph) -> None:
    """Reorder ``graph.node`` in place so every node comes after the producers of its inputs.

    Kahn's algorithm, taking ready nodes in their original order, so an already sorted
    graph is left as it is. (Names a subgraph reads from the outer scope are not tracked;
    CNN classifiers have no subgraphs.)
    """
    nodes = list(graph.node)
    known = {i.name for i in graph.input} | {t.name for t in graph.initializer} | {""}
    producer = {out: index for index, node in enumerate(nodes) for out in node.output}
    deps = [{producer[n] for n in node.input if n not in known and n in producer} for node in nodes]
    users: list[list[int]] = [[] for _ in nodes]
    for index, producers in enumerate(deps):
        for p in producers:
            users[p].append(index)
    waiting = [len(d) for d in deps]
    ready = [index for index, count in enumerate(waiting) if count == 0]
    heapq.heapify(ready)
    order = []
    while ready:
        index = heapq.heappop(ready)
        order.append(index)
        for user in users[index]:
            waiting[user] -= 1
            if waiting[user] == 0:
                heapq.heappush(ready, user)
    if len(order) != len(nodes):
        raise ValueError("the ONNX graph has a cycle; it cannot be sorted")
    del graph.node[:]
    graph.node.extend(nodes[i] for i in order)


def to_fp16(model_path, out_path, keep_io_float32: bool = True, op_block_list=None) -> Path:
    """Convert an FP32 ONNX file to FP16 and write it atomically.

    Args:
        model_path: the FP32 ONNX file.
        out_path: where the FP16 file goes.
        keep_io_float32: keep graph inputs and outputs float32 (Casts inside the graph).
        op_block_list: op types to keep in FP32 (None: the converter's default list).

    Returns:
        ``out_path`` as a Path.
    """
    import onnx

    model = onnx.load(str(model_path))
    convert = _converter()
    kwargs = {"keep_io_types": keep_io_float32}
    if op_block_list is not None:
        kwargs["op_block_list"] = list(op_block_list)
    model16 = convert(model, **kwargs)
    topological_sort(model16.graph)
    onnx.checker.check_model(model16)
    out_path = Path(out_path)
    out_path.parent.mkdir(parents=True, exist_ok=True)
    tmp = out_path.with_name(f".{out_path.name}.tmp-{os.getpid()}")
    try:
        onnx.save(model16, str(tmp))
        os.replace(tmp, out_path)
    finally:
        tmp.unlink(missing_ok=True)
    return out_path
