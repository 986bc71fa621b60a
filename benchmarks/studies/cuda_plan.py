"""The CUDA check's plan: what travels besides the wheels, every command the run executes,
and the checks that each command parses (without running it).

Paths in the plan are relative to the repository root (the carried folder
``.cuda_carry``), or absolute under the run's scratch folder (bundles) and its results
folder; the run executes every step from the repository root.
"""

from __future__ import annotations

import hashlib
import shutil
import subprocess
from dataclasses import dataclass, field
from pathlib import Path

from benchmarks.studies import ROOT
from edgeft.errors import UserError

#: What travels besides the working tree (relative to ROOT; ignored by git, named in the
#: device call's carry): ``wheels/``, and ``assets/`` in the shared assets' layout (so
#: ``EDGEFT_ASSETS`` can point at it). The run installs the wheels into ``site/`` there.
CARRY = Path(".cuda_carry")
EUROSAT = Path("datasets/eurosat_rgb_200pc")
MOBILENET_V2 = Path("weights/mobilenet_v2-b0353104.pth")
MOBILENET_V2_SHA256 = "b03531047ffacf1e2488318dcd2aba1126cde36e3bfe1aa5cb07700aeeee9889"
#: The device tool's limit on the working tree that travels (tracked, untracked, carried).
LIMIT_BYTES = 64 * 2**20
PRECISIONS = ("fp32", "fp16", "bf16")
GPU_TESTS = "gpu and not tensorrt and not rtx"  # TensorRT is not on the GPU machine
BENCH_BACKENDS = "torch,torch-fp16,torch-cl"
#: Epochs per arch. ResNet-50's ImageNet weights (98 MB) are not available offline here
#: and would not fit the 64 MiB that travels: it trains from random weights (scratch).
EPOCHS = {"mobilenet_v2": 3, "resnet50": 6}  # MobileNetV2: 1 frozen + 3


def recipe(arch: str, carry: Path = CARRY) -> list[str]:
    """How ``arch`` is trained: MobileNetV2 from the carried ImageNet checkpoint (fastai's
    fine_tune: 1 frozen epoch, then the rest), ResNet-50 from random weights."""
    if arch == "mobilenet_v2":
        weights = ["--weights", str(carry / "assets" / MOBILENET_V2)]
        epochs = ["--freeze-epochs", "1", "--epochs", str(EPOCHS[arch])]
        return weights + ["--strategy", "discriminative", *epochs]
    return ["--no-pretrained", "--strategy", "scratch", "--epochs", str(EPOCHS[arch])]


#: The options class each edgeft command builds from its command line.
OPTIONS = {
    "finetune": "edgeft.train.options:FinetuneOptions",
    "bench": "benchmarks.options:BenchOptions",
    "export": "exporters.options:ExportOptions",
    "env": "edgeft.cli.env:EnvOptions",
}


@dataclass
class Step:
    """One command of the run: ``python3 ARGV...`` from the repository root."""

    name: str
    argv: list[str]
    timeout_s: int
    meta: dict = field(default_factory=dict)
    stdout: str | None = None  # results file that receives the command's standard output


def sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def prepare_assets(src: Path, dest: Path) -> None:
    """Copy EuroSAT-200 and the MobileNetV2 checkpoint from the shared assets into ``dest``.

    Raises:
        UserError: the shared assets are not at ``src``.
    """
    for rel in (EUROSAT, MOBILENET_V2):
        if not (src / rel).exists():
            raise UserError(f"{src / rel} is missing: set --assets to the shared assets folder")
    if not (dest / EUROSAT).is_dir():
        shutil.copytree(src / EUROSAT, dest / EUROSAT)
    if not (dest / MOBILENET_V2).is_file() or sha256(dest / MOBILENET_V2) != MOBILENET_V2_SHA256:
        (dest / MOBILENET_V2).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(src / MOBILENET_V2, dest / MOBILENET_V2)


def check_assets(dest: Path) -> dict:
    """EuroSAT-200 complete (every file of its MANIFEST.sha256, 10 classes x 200) and the
    MobileNetV2 checkpoint intact.

    Raises:
        UserError: one line naming the missing or changed file.
    """
    data = dest / EUROSAT
    manifest = data / "MANIFEST.sha256"
    if not manifest.is_file():
        raise UserError(f"{manifest} is missing: run --prepare")
    lines = [ln.split(maxsplit=1) for ln in manifest.read_text().splitlines() if ln.strip()]
    for digest, rel in lines:
        path = data / rel.strip()
        if not path.is_file() or sha256(path) != digest:
            raise UserError(f"{path} is missing or changed: run --prepare")
    classes = sorted({Path(rel.strip()).parts[-2] for _, rel in lines})
    weights = dest / MOBILENET_V2
    if not weights.is_file() or sha256(weights) != MOBILENET_V2_SHA256:
        raise UserError(f"{weights} is missing or changed: run --prepare")
    return {"images": len(lines), "classes": len(classes)}


def travelling_bytes(carry: Path = CARRY, root: Path = ROOT) -> dict:
    """Bytes that travel to the GPU machine: the working tree git sees (tracked and
    untracked-not-ignored files) plus the carried folder.

    Raises:
        UserError: more than the device tool's 64 MiB.
    """
    names = subprocess.run(
        ["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard"],
        cwd=root,
        capture_output=True,
        check=True,
    ).stdout.split(b"\0")
    tree = sum(
        (root / n.decode()).stat().st_size for n in names if n and (root / n.decode()).is_file()
    )
    top = root / carry
    files = [p for p in top.rglob("*") if p.is_file() and p.relative_to(top).parts[0] != "site"]
    carried = sum(p.stat().st_size for p in files)
    total = tree + carried
    if total > LIMIT_BYTES:
        raise UserError(f"{total / 2**20:.1f} MiB would travel, over the 64 MiB limit")
    return {"tree_bytes": tree, "carried_bytes": carried, "total_bytes": total}


def gpu_test_files(root: Path = ROOT) -> list[str]:
    """Test files (relative paths) that hold a ``pytest.mark.gpu`` test."""
    return sorted(
        str(p.relative_to(root))
        for p in (root / "tests").rglob("test_*.py")
        if "@pytest.mark.gpu" in p.read_text()
    )


def features() -> dict:
    """What this edgeft's ``finetune`` offers: ``--precision`` and the launcher path
    (``--lr-scale``, the option that comes with it)."""
    import typer

    from edgeft.cli import app

    names = {p.name for p in typer.main.get_command(app).commands["finetune"].params}
    return {"precision": "precision" in names, "distributed": "lr_scale" in names}


def _finetune(arch: str, precision: str, out: Path, feats: dict, workers: int, carry: Path):
    argv = ["-m", "edgeft", "finetune", "--data", str(carry / "assets" / EUROSAT)]
    argv += ["--arch", arch, "--out", str(out), *recipe(arch, carry)]
    argv += ["--size", "224", "--batch-size", "64", "--workers", str(workers)]
    argv += ["--seed", "0", "--quiet", "--force"]
    return argv + (["--precision", precision] if feats["precision"] else [])


def _bench(arch: str, work: Path, results: Path) -> Step:
    bundle = work / f"{arch}-fp32"
    argv = ["-m", "edgeft", "bench", str(bundle), "--device", "cuda"]
    argv += ["--backends", BENCH_BACKENDS, "--batch-sizes", "1,8,64"]
    argv += ["--out", str(results / f"bench-{arch}"), "--quiet"]
    return Step(f"bench-{arch}", argv, 240, {"arch": arch, "report": f"bench-{arch}/report.json"})


def build_plan(
    work: Path, results: Path, feats: dict, workers: int = 8, carry: Path = CARRY
) -> list[Step]:
    """Every command of the run, in the order it runs (the most telling first, so a run cut
    short by its time limit still holds them): the environment, MobileNetV2 FP32 and its
    bench, the GPU tests, ResNet-50 FP32 and its bench, the fp16/bf16 fine-tunes, an ONNX
    export of a CUDA-trained bundle, and the launcher."""

    def ft(arch: str, precision: str) -> Step:
        out = work / f"{arch}-{precision}"
        meta = {"arch": arch, "precision": precision, "bundle": str(out)}
        argv = _finetune(arch, precision, out, feats, workers, carry)
        return Step(f"finetune-{arch}-{precision}", argv, 180, meta)

    tests = ["-m", "pytest", "-p", "no:cacheprovider", "-q", "-rs", "-m", GPU_TESTS]
    tests += [*gpu_test_files(), "--junitxml", str(results / "pytest-gpu.xml")]
    steps = [
        Step("env", ["-m", "edgeft", "env", "--json"], 60, stdout="env.json"),
        ft("mobilenet_v2", "fp32"),
        _bench("mobilenet_v2", work, results),
        Step("pytest-gpu", tests, 300),
        ft("resnet50", "fp32"),
        _bench("resnet50", work, results),
    ]
    if feats["precision"]:
        steps += [ft(a, p) for a in ("resnet50", "mobilenet_v2") for p in PRECISIONS[1:]]
    bundle = work / "mobilenet_v2-fp32"
    steps.append(Step("export-onnx", ["-m", "edgeft", "export", str(bundle), "--onnx"], 180))
    if feats["distributed"]:
        launch = ["-m", "accelerate.commands.launch", "--num_processes", "1"]
        launch += ["--num_machines", "1", "--mixed_precision", "no", "--dynamo_backend", "no"]
        ft_argv = _finetune("mobilenet_v2", "fp32", work / "accelerate", feats, workers, carry)
        argv = launch + ft_argv
        meta = {"arch": "mobilenet_v2", "precision": "fp32", "bundle": str(work / "accelerate")}
        steps.append(Step("accelerate-launch", argv, 180, meta))
    return steps


def skipped(feats: dict) -> dict[str, str]:
    """Parts of the issue's plan this edgeft cannot run, with the reason."""
    out = {}
    if not feats["precision"]:
        out["fp16/bf16 fine-tuning"] = "edgeft finetune has no --precision"
    if not feats["distributed"]:
        out["accelerate launch"] = "edgeft finetune has no launcher path (--lr-scale)"
    return out


def _parse_edgeft(args: list[str]) -> None:
    import typer

    from edgeft.cli import app
    from edgeft.cli.build import options_from
    from edgeft.formats import load_object

    try:  # typer >= 0.20 vendors click as typer._click
        from typer._click.exceptions import ClickException
    except ImportError:  # pragma: no cover - older typer on plain click
        from click.exceptions import ClickException

    name, rest = args[0], list(args[1:])
    cmd = typer.main.get_command(app).commands.get(name)
    if cmd is None:
        raise UserError(f"edgeft has no command {name!r}")
    try:
        ctx = cmd.make_context(name, rest)
    except ClickException as exc:
        raise UserError(f"edgeft {name}: {exc.format_message()}") from None
    opts = options_from(load_object(OPTIONS[name]), ctx.params)
    if hasattr(opts, "validate"):
        opts.validate()


def _parse_launcher(args: list[str]) -> list[str]:
    """Parse ``accelerate launch`` arguments; returns the module command it runs."""
    import contextlib
    import io

    from accelerate.commands.launch import launch_command_parser

    try:
        with contextlib.redirect_stderr(io.StringIO()) as err:
            ns = launch_command_parser().parse_args(args)
    except SystemExit:
        lines = err.getvalue().strip().splitlines() or ["bad arguments"]
        raise UserError(f"accelerate launch: {lines[-1]}") from None
    if not ns.module:
        raise UserError("accelerate launch: the plan runs edgeft as a module (-m edgeft)")
    return ["-m", ns.training_script, *ns.training_script_args]


def parse_step(step: Step, root: Path = ROOT) -> None:
    """Parse ``step``'s command line as the run will, without running it: edgeft commands
    with their click command and options ``validate()``, the launcher with its own parser,
    pytest's test files by existence (the dry run collects them separately).

    Raises:
        UserError: ``step NAME: <what the parser said>``.
    """
    argv = step.argv
    try:
        if argv[:2] == ["-m", "accelerate.commands.launch"]:
            argv = _parse_launcher(argv[2:])
        if argv[:2] == ["-m", "edgeft"]:
            _parse_edgeft(argv[2:])
        elif argv[:2] == ["-m", "pytest"]:
            missing = [a for a in argv if a.startswith("tests/") and not (root / a).is_file()]
            if missing:
                raise UserError(f"no test file {missing[0]}")
        else:
            raise UserError(f"the plan does not know how to check {' '.join(argv[:2])}")
    except UserError as exc:
        raise UserError(f"step {step.name}: {exc}") from None
