"""Which TensorRT is installed here, and whether a built engine fits this device.

Kept free of heavy imports: a device that only runs engines imports this to check an
engine record before deserializing it (the plan is only valid for the TensorRT version and
GPU model it was built with).
"""

from __future__ import annotations

import importlib
from dataclasses import dataclass

from edgeft.errors import UserError
from edgeft.platform.gpu import describe_device

INSTALL_HINT = (
    "On a Jetson, TensorRT comes with JetPack: `sudo apt install python3-libnvinfer` "
    "(a virtualenv needs --system-site-packages to see it). On an x86-64 or SBSA machine "
    "with an NVIDIA GPU: `pip install tensorrt` (or tensorrt-cu12 / tensorrt-cu13 to match "
    "the CUDA major). For GeForce/RTX GPUs TensorRT-RTX also works: `pip install tensorrt-rtx`."
)


class TensorRTUnavailable(UserError):
    """No TensorRT Python module imports here; the message says what to install."""


class TensorRTBuildError(UserError):
    """The ONNX file could not be parsed or the engine not built; the message says why."""


class EngineMismatch(UserError):
    """An engine was built with another TensorRT version or on another GPU than this one."""


@dataclass(frozen=True)
class TRTInfo:
    """Which TensorRT library is loaded: ``flavour`` is "tensorrt" or "tensorrt_rtx"."""

    flavour: str
    version: str

    @property
    def major(self) -> int:
        return int(self.version.split(".")[0])

    @property
    def label(self) -> str:
        name = "TensorRT-RTX" if self.flavour == "tensorrt_rtx" else "TensorRT"
        return f"{name} {self.version}"

    def as_dict(self) -> dict:
        return {"flavour": self.flavour, "version": self.version}


def trt_info(module) -> TRTInfo:
    """The :class:`TRTInfo` of an imported ``tensorrt`` or ``tensorrt_rtx`` module."""
    flavour = "tensorrt_rtx" if "rtx" in module.__name__ else "tensorrt"
    return TRTInfo(flavour, str(module.__version__))


def load_trt(prefer=("tensorrt", "tensorrt_rtx")):
    """Import the first TensorRT flavour of ``prefer`` that works.

    Returns:
        ``(module, TRTInfo)``.

    Raises:
        TensorRTUnavailable: none imports; the message says what to install.
    """
    reasons = []
    for name in prefer:
        try:
            module = importlib.import_module(name)
        except (ImportError, OSError, RuntimeError) as exc:  # OSError: a broken libnvinfer
            reasons.append(f"{name}: {exc}")
        else:
            return module, trt_info(module)
    raise TensorRTUnavailable(
        f"TensorRT is not installed for this Python ({'; '.join(reasons)}). {INSTALL_HINT}"
    )


def _gpu_text(gpu) -> str:
    return f"GPU {gpu['name']} ({gpu['sm']})" if gpu else "no visible GPU"


def check_engine_compatible(
    record: dict, trt=None, *, device=None, rebuild_hint="edgeft export --trt"
):
    """Refuse an engine built with another TensorRT version or on another GPU.

    TensorRT plans run only with the TensorRT version and GPU model they were built for.
    TensorRT-RTX engines are portable across GPUs by design, so only its version is compared.

    Args:
        record: the dict :func:`build_engine` returned.
        trt: a loaded module or :class:`TRTInfo`; None imports the record's flavour.
        device: :func:`describe_device` output; None probes this machine.
        rebuild_hint: the command the message tells the user to run.

    Raises:
        EngineMismatch: one line saying what differs and to rebuild on this device.
        TensorRTUnavailable: the record's TensorRT flavour is not installed here.
    """
    built = record["tensorrt"]
    built_info = TRTInfo(built["flavour"], built["version"])
    if trt is None:
        _, here = load_trt(prefer=(built_info.flavour,))
    else:
        here = trt if isinstance(trt, TRTInfo) else trt_info(trt)
    device = describe_device() if device is None else device
    built_gpu = (record.get("device") or {}).get("gpu")
    here_gpu = device.get("gpu")
    same_trt = (here.flavour, here.version) == (built_info.flavour, built_info.version)
    same_gpu = True
    if built_info.flavour == "tensorrt" and built_gpu is not None:
        same_gpu = here_gpu is not None and all(
            here_gpu.get(k) == built_gpu.get(k) for k in ("name", "compute_capability")
        )
    if same_trt and same_gpu:
        return
    raise EngineMismatch(
        f"engine built with {built_info.label} on {_gpu_text(built_gpu)}; this device has "
        f"{here.label} / {_gpu_text(here_gpu)}: rebuild it on this device with `{rebuild_hint}`"
    )
