"""The one table of the forms a bundle's model can take, and how each is made and run.

Every other part of edgeft derives what it knows about a form from a :class:`Format` row
here: ``edgeft export --format`` and its hints, ``edgeft bench --backends``, ``edgeft
predict --backend``, the runtime's ``backend="auto"`` choice, which runner class runs a
form, what it needs installed and on which devices it runs. A new backend is one runner
module, one exporter module and one :func:`register` call (or a row below). Runners and
exporters are ``"module:attribute"`` strings imported only when used: reading this table
imports nothing heavy (``edgeft --help`` and the device runtime stay light).
"""

from __future__ import annotations

import importlib
import importlib.util
from dataclasses import dataclass, field

from edgeft.errors import UserError

DEVICES = ("cpu", "cuda", "jetson")
PRECISIONS = ("fp32", "fp16", "bf16", "int8")


@dataclass(frozen=True)
class Format:
    """One form of a bundle's model.

    Attributes:
        name: the backend/artifact name used everywhere (``onnx-int8``); the artifact's key
            in ``bundle.json``.
        precision: ``fp32``, ``fp16``, ``bf16`` or ``int8`` (selects the parity tolerance).
        runner: ``"module:Class"`` of the :class:`edgeft.runners.base.Runner` that runs it.
        devices: the ``--device`` values it runs on (``cpu``, ``cuda``, ``jetson``).
        file: the artifact file in the bundle; ``None`` for forms that run the bundle's
            own weights (PyTorch).
        file_format: what the file is (``onnx``, ``tensorrt-plan``), for the record.
        artifact: the artifact it runs when that is another form's (a runtime mode of the
            same file, such as OpenVINO's bf16 hint on the FP32 IR); default its own.
        engine: what runs it, for people (``ONNX Runtime``, ``TensorRT``).
        source: the form its file is built from (``None``: the bundle's weights).
        exporter: ``"module:function"`` that builds the file (see :mod:`exporters`).
        needs: Python modules it needs at run time (checked with ``find_spec``).
        install: what to install when one of ``needs`` is missing.
        export: the ``edgeft export`` options that make it (for hints).
        normalize_in_graph: the graph applies mean/std itself (input is 0..1 RGB).
        concurrent: the runner's ``infer`` may be called from several threads at once.
        auto: ``(machine, run_device, rank)`` entries: on a ``machine`` (``cpu`` or
            ``cuda``), the runtime's ``backend="auto"`` tries this form on ``run_device``,
            lowest rank first.
        options: extra keyword arguments for the runner and the exporter.
    """

    name: str
    precision: str
    runner: str
    devices: tuple[str, ...]
    file: str | None = None
    file_format: str = "onnx"
    engine: str = "ONNX Runtime"
    artifact: str | None = None
    source: str | None = None
    exporter: str | None = None
    needs: tuple[str, ...] = ()
    install: str = ""
    export: str = ""
    normalize_in_graph: bool = False
    concurrent: bool = False
    auto: tuple[tuple[str, str, int], ...] = ()
    options: dict = field(default_factory=dict, hash=False, compare=False)

    @property
    def artifact_name(self) -> str | None:
        """The key of the artifact record it runs (None: it runs the bundle's weights)."""
        return self.artifact or (self.name if self.file else None)

    def export_hint(self, bundle_path) -> str:
        """The command that makes this form, e.g. ``edgeft export B --int8``."""
        return f"edgeft export {bundle_path} {self.export}".strip() if self.export else ""


_ORT = ("onnxruntime",)
_ORT_INSTALL = "pip install onnxruntime (CPU) or onnxruntime-gpu (CUDA); not both"
_OV = ("openvino",)
_OV_INSTALL = "pip install openvino (edgeft's cpu extra has it)"
_TRT_INSTALL = (
    "TensorRT: on a Jetson `sudo apt install python3-libnvinfer`, elsewhere `pip install tensorrt`"
)

#: The forms edgeft knows, in ladder order (reference first).
FORMATS: dict[str, Format] = {}


def register(fmt: Format, *, replace: bool = False) -> Format:
    """Add a row to the table (a plugin backend, or a test's).

    Raises:
        ValueError: ``fmt.name`` is taken and ``replace`` is false, or a field is invalid.
    """
    if fmt.name in FORMATS and not replace:
        raise ValueError(f"format {fmt.name!r} is already registered")
    if fmt.precision not in PRECISIONS:
        raise ValueError(f"format {fmt.name!r}: precision must be one of {PRECISIONS}")
    if not set(fmt.devices) <= set(DEVICES):
        raise ValueError(f"format {fmt.name!r}: devices must be among {DEVICES}")
    if fmt.source is not None and fmt.source not in FORMATS:
        raise ValueError(f"format {fmt.name!r}: unknown source form {fmt.source!r}")
    FORMATS[fmt.name] = fmt
    return fmt


def unregister(name: str) -> None:
    """Remove a row added with :func:`register` (tests)."""
    FORMATS.pop(name, None)


for _row in (
    Format(
        "torch",
        "fp32",
        "edgeft.runners.torch_runner:TorchRunner",
        DEVICES,
        engine="PyTorch",
        needs=("torch",),
        install="pip install 'edgeft[cpu]' (PyTorch)",
        auto=(("cpu", "cpu", 90), ("cuda", "cuda", 80), ("cuda", "cpu", 90)),
    ),
    Format(
        "torch-fp16",
        "fp16",
        "edgeft.runners.torch_runner:TorchFP16Runner",
        ("cuda", "jetson"),
        engine="PyTorch (CUDA FP16 autocast)",
        needs=("torch",),
        install="a CUDA build of PyTorch",
    ),
    Format(
        "torch-cl",
        "fp32",
        "edgeft.runners.torch_runner:TorchChannelsLastRunner",
        ("cuda", "jetson"),
        engine="PyTorch (channels-last)",
        needs=("torch",),
        install="a CUDA build of PyTorch",
    ),
    Format(
        "onnx",
        "fp32",
        "edgeft.runners.onnxrt:OnnxRunner",
        DEVICES,
        file="model.onnx",
        exporter="exporters.onnx_export:build",
        needs=_ORT,
        install=_ORT_INSTALL,
        export="--onnx",
        concurrent=True,
        auto=(("cpu", "cpu", 20), ("cuda", "cuda", 30)),
        options={"fold_normalize": False},
    ),
    Format(
        "onnx-folded",
        "fp32",
        "edgeft.runners.onnxrt:OnnxRunner",
        DEVICES,
        file="model-folded.onnx",
        exporter="exporters.onnx_export:build",
        needs=_ORT,
        install=_ORT_INSTALL,
        export="--onnx --fold-normalize",
        normalize_in_graph=True,
        concurrent=True,
        auto=(("cpu", "cpu", 30), ("cuda", "cuda", 40)),
        options={"fold_normalize": True},
    ),
    Format(
        "onnx-int8",
        "int8",
        "edgeft.runners.onnxrt:OnnxRunner",
        ("cpu",),
        file="model-int8.onnx",
        source="onnx",
        exporter="exporters.int8:build_ort",
        needs=_ORT,
        install=_ORT_INSTALL,
        export="--int8",
        concurrent=True,
        auto=(("cpu", "cpu", 10), ("cuda", "cpu", 50)),
    ),
    Format(
        "openvino",
        "fp32",
        "edgeft.runners.openvino:OpenVinoRunner",
        ("cpu",),
        file="model-openvino.xml",
        file_format="openvino-ir",
        engine="OpenVINO",
        source="onnx",
        exporter="exporters.openvino:build",
        needs=_OV,
        install=_OV_INSTALL,
        export="--format openvino",
        auto=(("cpu", "cpu", 25),),
        options={"precision_hint": "f32"},
    ),
    Format(
        "openvino-bf16",
        "bf16",
        "edgeft.runners.openvino:OpenVinoRunner",
        ("cpu",),
        artifact="openvino",
        engine="OpenVINO (bf16 inference hint on the FP32 IR)",
        needs=_OV,
        install=_OV_INSTALL,
        export="--format openvino",
        options={"precision_hint": "bf16"},
    ),
    Format(
        "openvino-int8",
        "int8",
        "edgeft.runners.openvino:OpenVinoRunner",
        ("cpu",),
        file="model-int8-openvino.xml",
        file_format="openvino-ir",
        engine="OpenVINO",
        source="onnx",
        exporter="exporters.openvino:build_int8",
        needs=(*_OV, "nncf"),
        install=_OV_INSTALL + " nncf",
        export="--format openvino-int8",
        auto=(("cpu", "cpu", 15),),
        options={"precision_hint": "f32"},
    ),
    # The same INT8 IR with its float parts (the stem NNCF leaves in float, reorders, the
    # head) in bf16 where the CPU has native bf16: those parts dominate at large batches.
    Format(
        "openvino-int8-bf16",
        "int8",
        "edgeft.runners.openvino:OpenVinoRunner",
        ("cpu",),
        artifact="openvino-int8",
        engine="OpenVINO (INT8 IR, its float layers with the bf16 inference hint)",
        needs=_OV,
        install=_OV_INSTALL,
        export="--format openvino-int8",
        options={"precision_hint": "bf16"},
    ),
    Format(
        "trt-fp16",
        "fp16",
        "edgeft.runners.tensorrt:TrtRunner",
        ("cuda", "jetson"),
        file="model-fp16.plan",
        file_format="tensorrt-plan",
        engine="TensorRT",
        source="onnx",
        exporter="exporters.tensorrt:build",
        needs=(),  # tensorrt or tensorrt_rtx: the runner checks which the engine needs
        install=_TRT_INSTALL,
        export="--trt --fp16 (on the device that runs it)",
        auto=(("cuda", "cuda", 10),),
        options={"precision": "fp16"},
    ),
    Format(
        "trt-int8",
        "int8",
        "edgeft.runners.tensorrt:TrtRunner",
        ("cuda", "jetson"),
        file="model-int8.plan",
        file_format="tensorrt-plan",
        engine="TensorRT",
        source="onnx",
        exporter="exporters.tensorrt:build",
        install=_TRT_INSTALL,
        export="--trt --int8 (on the device that runs it)",
        auto=(("cuda", "cuda", 0),),
        options={"precision": "int8"},
    ),
):
    register(_row)


def get(name: str) -> Format:
    """The row named ``name``.

    Raises:
        UserError: no such form; the message lists the known ones.
    """
    try:
        return FORMATS[name]
    except KeyError:
        raise UserError(f"unknown backend {name!r}: choose from {', '.join(FORMATS)}") from None


def names(device: str | None = None, exportable: bool | None = None) -> list[str]:
    """Form names in table order, optionally those running on ``device`` or having a file."""
    return [
        f.name
        for f in FORMATS.values()
        if (device is None or device in f.devices)
        and (exportable is None or (f.exporter is not None) == exportable)
    ]


def load_object(ref: str):
    """Import ``"module:attribute"``."""
    module, _, attr = ref.partition(":")
    return getattr(importlib.import_module(module), attr)


def missing_needs(fmt: Format) -> str | None:
    """Why ``fmt`` cannot run for lack of a package (one line), or None."""
    for mod in fmt.needs:
        try:
            found = importlib.util.find_spec(mod) is not None
        except (ImportError, ValueError):  # a module blocked or broken in sys.modules
            found = False
        if not found:
            return f"{mod} is not installed ({fmt.install})"
    return None


def status(name: str, bundle, device: str) -> tuple[bool, str]:
    """Whether form ``name`` can run ``bundle`` on ``device`` here, and why not."""
    fmt = get(name)
    if device not in fmt.devices:
        if "cpu" not in fmt.devices:
            return (
                False,
                f"{name} runs on an NVIDIA GPU with CUDA (--device {' or '.join(fmt.devices)})",
            )
        return False, f"{name} does not run on {device} (runs on {', '.join(fmt.devices)})"
    artifact = fmt.artifact_name
    if artifact is not None and artifact not in bundle.artifacts:
        hint = fmt.export_hint(bundle.path)
        return False, f"bundle has no {artifact} artifact" + (
            f" (make it with `{hint}`)" if hint else ""
        )
    why = missing_needs(fmt)
    if why:
        return False, why
    try:
        cls = load_object(fmt.runner)
    except ImportError as exc:
        return False, f"cannot import its runner: {exc}"
    available = getattr(cls, "available", None)
    return available(bundle, fmt, device) if available else (True, "")


def make_runner(name: str, bundle, device: str = "cpu", threads: int | None = None, **kwargs):
    """Construct (not activate) the runner of form ``name`` for ``bundle``."""
    fmt = get(name)
    return load_object(fmt.runner)(bundle, fmt, device=device, threads=threads, **kwargs)


def candidates(machine: str) -> list[tuple[str, str]]:
    """``(form, run device)`` pairs the runtime's ``auto`` tries on a ``cpu`` or ``cuda``
    machine, best first."""
    rows = [
        (rank, i, f.name, run)
        for i, f in enumerate(FORMATS.values())
        for m, run, rank in f.auto
        if m == machine
    ]
    return [(name, run) for _, _, name, run in sorted(rows)]
