"""The wheels the CUDA check carries to the GPU machine, and the checks that they suffice.

The GPU machine (one NVIDIA H200, Python 3.12, no network) has PyTorch and most of the
scientific stack but not fastai. :data:`GPU_PACKAGES` is its package list as the device
tool's KINDS.md records it (read there on 2026-11-17), with the versions it gives in
:data:`GPU_VERSIONS`. :data:`WHEELS` is what travels: exactly the distributions that
edgeft's fine-tuning, bench, export and GPU tests import and that machine lacks (found
by :func:`trace_imports` on a full install, not guessed), plus ``typing-extensions``,
which pydantic needs newer than PyTorch guarantees. Versions are the ones this project's
CPU machines run. Requirements a carried wheel declares but the run never imports are
listed in :data:`NOT_CARRIED` with the reason (spaCy alone is about 30 MB of wheels).
"""

from __future__ import annotations

import json
import subprocess
import sys
import zipfile
from dataclasses import dataclass
from email.parser import Parser
from pathlib import Path

from packaging.requirements import Requirement
from packaging.tags import Tag, compatible_tags, cpython_tags
from packaging.utils import canonicalize_name, parse_wheel_filename
from packaging.version import Version

from edgeft.errors import UserError

PYTHON = (3, 12)
#: glibc 2.28 at least: PyTorch 2.11's own wheels are manylinux_2_28.
PLATFORMS = [f"manylinux_2_{n}_x86_64" for n in range(28, 4, -1)] + [
    "manylinux2014_x86_64",
    "manylinux2010_x86_64",
    "manylinux1_x86_64",
]
#: Marker environment of the GPU machine's python3 (3.12.3 on Linux x86-64).
MARKERS = {
    "python_version": "3.12",
    "python_full_version": "3.12.3",
    "sys_platform": "linux",
    "platform_system": "Linux",
    "platform_machine": "x86_64",
    "os_name": "posix",
    "implementation_name": "cpython",
    "platform_python_implementation": "CPython",
    "extra": "",
}

WHEELS = {
    "fastai": "2.8.12",
    "fastcore": "2.2.41",
    "fastprogress": "1.1.6",  # imports fasthtml.common (its notebook output)
    "fasttransform": "0.0.5",
    "fastdownload": "0.0.8",
    "plum-dispatch": "2.9.0",
    "beartype": "0.23.1",
    "python-fasthtml": "0.14.14",
    "starlette": "1.10.0",
    "itsdangerous": "2.2.0",
    "python-multipart": "0.0.34",
    "pydantic": "2.14.4",  # edgeft's manifest and preprocessing contract
    "pydantic-core": "2.50.5",
    "annotated-types": "0.8.0",
    "typing-inspection": "0.4.5",
    "typing-extensions": "4.16.0",  # installed only where the machine's is older
    "onnxslim": "0.1.98",  # edgeft export simplifies the ONNX graph with it
}

_GPU_LIST = """absl-py accelerate aiofiles aiohappyeyeballs aiohttp aiosignal annotated-doc anyio
attrs botorch build certifi charset-normalizer chex click cloudpickle cmake colorama contourpy
coverage cuda-bindings cuda-core cuda-pathfinder cuda-toolkit cupy-cuda13x cycler cython diffrax
e3nn einops equinox etils execnet filelock flatbuffers flax fonttools formulaic frozenlist fsspec
gpytorch grpcio h11 h5py hf-xet httpcore httpx huggingface-hub humanize hypothesis idna imageio
iniconfig interface-meta jax jax-cuda13-pjrt jax-cuda13-plugin jaxlib jaxtyping jinja2 joblib
kiwisolver lazy-loader lightning lightning-utilities linear-operator lineax llvmlite lxml markdown
markdown-it-py markupsafe matplotlib mdurl meson ml-dtypes mpi4py mpmath msgpack multidict
multipledispatch mypy-extensions nanobind narwhals networkx ninja numba numba-cuda numpy numpyro
nvidia-ml-py onnx onnx-ir onnxruntime onnxscript opencv-python-headless optax opt-einsum
opt-einsum-fx optimistix orbax-checkpoint packaging pandas pathspec patsy peft pillow pip pluggy
portalocker prometheus-client propcache protobuf psutil pyarrow pybind11 py-cpuinfo pygments
pyparsing pyproject-hooks pyre-extensions pytest pytest-benchmark pytest-cov pytest-mock
pytest-timeout pytest-xdist python-dateutil pytorch-lightning pyyaml regex requests rich
sacrebleu safetensors scikit-build-core scikit-image scikit-learn scipy seaborn sentencepiece
sentence-transformers setuptools shellingham simplejson six sortedcontainers statsmodels sympy
tabulate tensorboard tensorboard-data-server tensorstore threadpoolctl tifffile tiktoken timm
tokenizers toolz torch torchaudio torchdiffeq torch-geometric torchmetrics torchvision tqdm
transformers treescope triton typer typing-extensions typing-inspect urllib3 uvloop
wadler-lindig werkzeug wheel wrapt xarray xxhash yarl zipp"""
#: The GPU machine's Python packages (device tool, KINDS.md, read 2026-11-17).
GPU_PACKAGES = frozenset(canonicalize_name(n) for n in _GPU_LIST.split())
#: Versions KINDS.md gives; the others are checked on the machine when the wheels install.
_GPU_PINS = """torch==2.11.0 torchvision==0.26.0 accelerate==1.15.0 numpy==2.5.2 onnx==1.23.1
onnx-ir==1.0.0 onnxruntime==1.30.0 onnxscript==0.7.2 safetensors==0.8.0 huggingface-hub==1.33.0"""
GPU_VERSIONS = dict(pin.split("==") for pin in _GPU_PINS.split())
#: Requirements carried wheels declare that nothing in the run imports (checked by the trace).
NOT_CARRIED = {
    "spacy": "fastai.text only; fastai.vision never imports it",
    "uvicorn": "fasthtml's web server; fastprogress imports fasthtml.common only",
    "httpx2": "fasthtml's HTTP client; not imported by fasthtml.common",
    "oauthlib": "fasthtml's OAuth module; not imported by fasthtml.common",
    "beautifulsoup4": "fasthtml's HTML parsing helpers; not imported by fasthtml.common",
}
#: Imported inside ``try`` where present; the run does not need them.
OPTIONAL_IMPORTS = {"pydot": "torch.fx draws graphs with it when it is installed"}

#: What the run imports: the CLI, fine-tuning (all precisions, distributed), bench on
#: CUDA, export, and the GPU tests' modules.
TRACE_MODULES = (
    "edgeft.cli",
    "edgeft.train.finetune",
    "edgeft.train.training",
    "edgeft.train.loaders",
    "fastai.callback.fp16",
    "fastai.callback.data",
    "fastai.distributed",
    "accelerate.commands.launch",
    "benchmarks.bench",
    "benchmarks.latency",
    "benchmarks.report",
    "edgeft.platform.env",
    "edgeft.runners.torch_runner",
    "exporters.pipeline",
    "exporters.onnx_export",
    "exporters.int8",
    "exporters.ort_int8",
    "onnxruntime.quantization",
    "onnxslim",
    "pytest",
    "tests.conftest",
)


@dataclass
class Wheel:
    """One wheel file: its name, version, tags and declared requirements."""

    path: Path
    name: str
    version: str
    tags: frozenset
    requires: list[Requirement]

    @property
    def size(self) -> int:
        return self.path.stat().st_size


def supported_tags() -> set[Tag]:
    """The wheel tags Python 3.12 (CPython) on manylinux x86-64 installs."""
    tags = set(cpython_tags(PYTHON, abis=["cp312", "abi3", "none"], platforms=PLATFORMS))
    tags.update(compatible_tags(PYTHON, "cp312", PLATFORMS))
    return tags


def read_wheel(path: Path) -> Wheel:
    """Parse a wheel's file name and its METADATA.

    Raises:
        UserError: a file name that is not a wheel's, or a METADATA that disagrees with it.
    """
    try:
        name, version, _, tags = parse_wheel_filename(path.name)
        with zipfile.ZipFile(path) as zf:
            meta_name = next(n for n in zf.namelist() if n.endswith(".dist-info/METADATA"))
            meta = Parser().parsestr(zf.read(meta_name).decode("utf-8"))
    except (ValueError, StopIteration, zipfile.BadZipFile, OSError) as exc:
        raise UserError(f"{path.name} is not a readable wheel ({exc or 'no METADATA'})") from None
    if canonicalize_name(meta["Name"]) != name or Version(meta["Version"]) != version:
        raise UserError(f"{path.name}: its METADATA says {meta['Name']} {meta['Version']}")
    requires = [Requirement(r) for r in meta.get_all("Requires-Dist") or []]
    return Wheel(path, str(name), str(version), frozenset(tags), requires)


def applicable(req: Requirement) -> bool:
    """Whether ``req`` applies on the GPU machine (no extra asked for)."""
    return req.marker is None or req.marker.evaluate(MARKERS)


def download(dest: Path) -> list[Path]:
    """Download the pinned wheels missing from ``dest`` (pip, no dependencies) and delete
    wheels of other versions, so the folder holds exactly :data:`WHEELS`.

    Raises:
        UserError: pip could not fetch one (the message is pip's last line).
    """
    dest.mkdir(parents=True, exist_ok=True)
    wanted = {canonicalize_name(n): v for n, v in WHEELS.items()}
    for path in dest.glob("*.whl"):
        name, version, _, _ = parse_wheel_filename(path.name)
        if wanted.get(name) != str(version):
            path.unlink()
    have = {parse_wheel_filename(p.name)[0] for p in dest.glob("*.whl")}
    specs = [f"{n}=={v}" for n, v in WHEELS.items() if canonicalize_name(n) not in have]
    if specs:
        cmd = [sys.executable, "-m", "pip", "download", "--no-deps", "--only-binary=:all:"]
        cmd += ["--python-version", "3.12", "--implementation", "cp", "-q", "-d", str(dest)]
        cmd += [a for abi in ("cp312", "abi3", "none") for a in ("--abi", abi)]
        cmd += [a for p in (*PLATFORMS, "any") for a in ("--platform", p)]
        proc = subprocess.run(cmd + specs, capture_output=True, text=True)
        if proc.returncode != 0:
            last = (proc.stderr.strip().splitlines() or ["(no output)"])[-1]
            raise UserError(f"pip download failed: {last}")
    return sorted(dest.glob("*.whl"))


def check_wheels(dest: Path) -> list[Wheel]:
    """Every pinned wheel present once, installable on the GPU machine, and every
    requirement it declares met there (see :func:`unmet`).

    Raises:
        UserError: one line naming the first wheel that is missing, extra or wrong.
    """
    found: dict[str, Wheel] = {}
    for path in sorted(Path(dest).glob("*.whl")):
        w = read_wheel(path)
        if w.name in found:
            raise UserError(f"two wheels of {w.name} in {dest}: keep {WHEELS.get(w.name)} only")
        found[w.name] = w
    ok_tags, wheels = supported_tags(), []
    for name, version in WHEELS.items():
        w = found.pop(canonicalize_name(name), None)
        if w is None:
            raise UserError(f"missing wheel {name}=={version} in {dest}: run --prepare")
        if w.version != version:
            raise UserError(f"{w.path.name}: the plan pins {name}=={version}; run --prepare")
        if not w.tags & ok_tags:
            raise UserError(f"{w.path.name} does not install on CPython 3.12 manylinux x86-64")
        wheels.append(w)
    if found:
        extra = next(iter(found.values())).path.name
        raise UserError(f"unexpected wheel {extra} in {dest}: not in the plan; delete it")
    problems = unmet(wheels)
    if problems:
        raise UserError(problems[0])
    return wheels


def unmet(wheels: list[Wheel], installed: dict[str, str] | None = None) -> list[str]:
    """Requirements of carried wheels that the wheel set plus the machine do not meet.

    Without ``installed`` (planning, here): met by a carried wheel of a matching version,
    a GPU machine package (version checked where :data:`GPU_VERSIONS` knows it), or
    :data:`NOT_CARRIED`. With ``installed`` (``{name: version}`` on the machine after the
    install): met by an installed version that matches.
    """
    carried = {w.name: w.version for w in wheels}
    problems = []
    for w in wheels:
        for req in filter(applicable, w.requires):
            name = canonicalize_name(req.name)
            if name in NOT_CARRIED:
                continue
            if installed is None:
                present = name in carried or name in GPU_PACKAGES
                have = carried.get(name) or GPU_VERSIONS.get(name)
            else:
                present, have = name in installed, installed.get(name)
            if not present:
                problems.append(f"{w.path.name} needs {req}: neither carried nor on the machine")
            elif have is not None and not req.specifier.contains(have, prereleases=True):
                problems.append(f"{w.path.name} needs {req}, but {name} is {have}")
    return problems


def trace_imports(root: Path, extra: tuple[str, ...] = ()) -> dict[str, str]:
    """Distributions the run's modules import here (a full install): ``{name: module}``.

    Runs :data:`TRACE_MODULES` and ``extra`` (the GPU tests' modules) in a fresh
    interpreter and maps every loaded module to the distribution that provides it.
    """
    code = (
        "import importlib, importlib.metadata as md, json, sys\n"
        f"for m in {list(TRACE_MODULES + tuple(extra))!r}: importlib.import_module(m)\n"
        "pd = md.packages_distributions(); out = {}\n"
        "for mod in sorted(sys.modules):\n"
        "    for d in pd.get(mod.split('.')[0], []): out.setdefault(d, mod)\n"
        "print(json.dumps(out))\n"
    )
    env = {"PYTHONPATH": str(root), "MPLBACKEND": "Agg", "PATH": "/usr/bin:/bin"}
    proc = subprocess.run(
        [sys.executable, "-c", code], cwd=root, capture_output=True, text=True, env=env
    )
    if proc.returncode != 0:
        last = (proc.stderr.strip().splitlines() or ["(no output)"])[-1]
        raise UserError(f"importing the run's modules failed here: {last}")
    return {canonicalize_name(k): v for k, v in json.loads(proc.stdout).items()}


def check_trace(imported: dict[str, str]) -> None:
    """Every imported distribution is carried, on the GPU machine, optional or edgeft.

    Raises:
        UserError: one line naming the distribution and the module that needs it.
    """
    carried = {canonicalize_name(n) for n in WHEELS}
    for dist, module in sorted(imported.items()):
        if dist in NOT_CARRIED:
            raise UserError(f"{dist} is imported ({module}) but listed as never imported")
        if dist in carried or dist in GPU_PACKAGES or dist in OPTIONAL_IMPORTS:
            continue
        if dist != "edgeft":
            raise UserError(
                f"{dist} is imported by the run ({module}) but neither carried nor on the "
                "GPU machine: add it to WHEELS"
            )


def install(dest: Path, site: Path) -> dict:
    """On the GPU machine: install the carried wheels it lacks into ``site`` (pip
    ``--target``, nothing of the machine's own environment changes).

    A wheel is installed when its distribution is absent, or present in a version that a
    carried wheel's requirement refuses (``typing-extensions`` older than pydantic needs).

    Returns:
        ``{"installed": [...], "already_there": {name: version}, "unmet": [...]}``; ``unmet``
        lists requirements the machine's own packages still do not meet.
    """
    from importlib import metadata

    wheels = [read_wheel(p) for p in sorted(Path(dest).glob("*.whl"))]
    machine = {}
    for dist in metadata.distributions():
        machine.setdefault(canonicalize_name(dist.metadata["Name"]), dist.version)
    wanted = {}
    for w in wheels:
        for req in filter(applicable, w.requires):
            wanted.setdefault(canonicalize_name(req.name), []).append(req)
    todo = [
        w
        for w in wheels
        if w.name not in machine
        or not all(r.specifier.contains(machine[w.name], True) for r in wanted.get(w.name, []))
    ]
    if todo:
        cmd = [sys.executable, "-m", "pip", "install", "-q", "--no-index", "--no-deps"]
        cmd += ["--no-compile", "--upgrade", "--target", str(site)]
        subprocess.run(cmd + [str(w.path) for w in todo], check=True)
    after = {**machine, **{w.name: w.version for w in todo}}
    return {
        "installed": [w.path.name for w in todo],
        "already_there": {w.name: machine[w.name] for w in wheels if w not in todo},
        "unmet": unmet(wheels, after),
    }
