"""Which backend the runtime runs a bundle with: the formats table's ``auto`` order,
filtered by what this machine can run (:func:`edgeft.formats.status`)."""

from __future__ import annotations

import importlib.util

from edgeft import formats
from edgeft.errors import UserError
from edgeft.platform.gpu import probe_gpu
from edgeft.runners.onnxrt import available_providers


def detect_device() -> str:
    """``cuda`` where TensorRT or ONNX Runtime's CUDA provider is installed and a GPU is
    visible, else ``cpu`` (the GPU probe runs only when a GPU engine is installed)."""

    wants_gpu = importlib.util.find_spec("tensorrt") is not None or (
        "CUDAExecutionProvider" in available_providers()
    )
    return "cuda" if wants_gpu and probe_gpu()[0] is not None else "cpu"


def candidates(device: str = "auto") -> list[tuple[str, str]]:
    """The ``(backend, run device)`` pairs ``auto`` tries, best first.

    Args:
        device: ``auto`` (probe), ``cpu`` or ``cuda``.
    """
    return formats.candidates(detect_device() if device == "auto" else device)


def resolve_backend(bundle, backend: str = "auto", device: str = "auto") -> tuple[str, str]:
    """Pick the ``(backend, device)`` to run ``bundle`` with.

    Raises:
        UserError: the named backend cannot run here, or (``auto``) nothing can; the
            message names each candidate's reason and what to export.
    """
    if backend != "auto":
        fmt = formats.get(backend)
        dev = device
        if dev == "auto":
            dev = detect_device() if detect_device() in fmt.devices else fmt.devices[0]
        ok, why = formats.status(backend, bundle, dev)
        if not ok:
            raise UserError(f"backend {backend} cannot run {bundle.path} here: {why}")
        return backend, dev
    tried = []
    for name, dev in candidates(device):
        ok, why = formats.status(name, bundle, dev)
        if ok:
            return name, dev
        tried.append(f"{name}/{dev}: {why}")
    raise UserError(
        f"bundle {bundle.path} has no artifact this machine can run ({'; '.join(tried)}): export one on "
        f"the workstation with `edgeft export {bundle.path}` (ONNX) or `edgeft export {bundle.path} --int8` "
        "(ONNX Runtime INT8, best on CPUs) and copy the bundle here"
    )
