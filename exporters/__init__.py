"""Exporters: one module per target (ONNX, ONNX Runtime INT8, TensorRT).

Each consumes a bundle (or one of its artifacts), writes one artifact, checks its parity
against the PyTorch reference and records it in ``bundle.json``.
"""
