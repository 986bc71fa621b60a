"""The formats table is the one owner of what a form is: a new backend is one row, one
runner class and one exporter, and then ``edgeft export --format``, ``edgeft bench
--backends``, ``edgeft predict --backend`` and the runtime all know it, with the right
hint while its artifact is missing."""

from __future__ import annotations

import json
import shutil
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

from benchmarks.bench import BenchOptions, run_bench
from edgeft import formats
from edgeft.cli import app
from edgeft.errors import UserError
from edgeft.runners.base import Runner
from exporters.request import BuildResult
from tests.bench_support import tiny_bench_bundle
from tests.conftest import copy_bundle


class CopyRunner(Runner):
    """A new runner: ONNX Runtime on one thread, on the form's own file."""

    def activate(self):
        import onnxruntime as ort

        so = ort.SessionOptions()
        so.intra_op_num_threads = 1
        self.session = ort.InferenceSession(str(self.path), so, providers=["CPUExecutionProvider"])

    def infer(self, batch):
        name = self.session.get_inputs()[0].name
        return self.session.run(None, {name: np.ascontiguousarray(batch, np.float32)})[0]

    def deactivate(self):
        self.session = None


@dataclass
class Options:
    """What :func:`build` takes from ``edgeft export``'s options: nothing."""


def build(req) -> BuildResult:
    """A new exporter: the FP32 ONNX, copied."""
    shutil.copyfile(req.source, req.out)
    return BuildResult(build={"copied_from": str(req.source.name)}, target={"runtime": "test"})


ROW = formats.Format(
    "onnx-copy",
    "fp32",
    f"{__name__}:CopyRunner",
    ("cpu",),
    file="model-copy.onnx",
    source="onnx",
    exporter=f"{__name__}:build",
    needs=("onnxruntime",),
    export="--format onnx-copy",
    auto=(("cpu", "cpu", 5),),
)


@pytest.fixture
def registered(tmp_path_factory):
    formats.register(ROW)
    try:
        yield copy_bundle(tiny_bench_bundle(tmp_path_factory), tmp_path_factory.mktemp("fmt") / "b")
    finally:
        formats.unregister(ROW.name)


def test_one_row_and_one_runner_reach_every_command(registered, tmp_path):
    from edgeft.runtime import Classifier
    from exporters.options import ExportOptions
    from exporters.pipeline import export_bundle

    b = registered
    split = json.loads((b / "split.json").read_text())
    image = str(Path(split["root"]) / split["valid"][0][0])
    hint = f"make it with `edgeft export {b} --format onnx-copy`"
    # missing artifact: the same hint from the runtime, predict and bench
    with pytest.raises(UserError, match="bundle has no onnx-copy artifact") as err:
        Classifier.load(b, backend="onnx-copy")
    assert hint in str(err.value)
    res = CliRunner().invoke(app, ["predict", str(b), image, "--backend", "onnx-copy"])
    assert isinstance(res.exception, UserError) and hint in str(res.exception)
    opts = BenchOptions(
        bundle=b,
        backends=["torch", "onnx-copy"],
        batch_sizes=(1,),
        runs=2,
        warmup=1,
        rounds=1,
        e2e=False,
        out=tmp_path / "r1",
        quiet=True,
    )
    report = run_bench(opts)
    entry = {e["name"]: e for e in report["backends"]}["onnx-copy"]
    assert entry["status"] == "unavailable" and hint in entry["reason"]
    # export through the pipeline: built by the new exporter, validated by the new runner
    rec = export_bundle(ExportOptions(bundle=b, format=["onnx-copy"], quiet=True)).records[
        "onnx-copy"
    ]
    assert rec.path == "model-copy.onnx" and rec.parity["passed"] and rec.parity["agreement"] == 1.0
    # now every command runs it
    report = run_bench(BenchOptions(**{**opts.__dict__, "out": tmp_path / "r2"}))
    rows = {r["backend"]: r for r in report["ladder"]["rows"]}
    assert rows["onnx-copy"]["passed"] and rows["onnx-copy"]["figures"]["agreement"] == 1.0
    res = CliRunner().invoke(app, ["predict", str(b), image, "--backend", "onnx-copy", "--json"])
    assert res.exit_code == 0, res.output
    top = json.loads(res.output.splitlines()[0])["top"]
    ref = CliRunner().invoke(app, ["predict", str(b), image, "--backend", "onnx", "--json"])
    assert [t["label"] for t in top] == [
        t["label"] for t in json.loads(ref.output.splitlines()[0])["top"]
    ]
    with Classifier.load(b) as clf:  # auto: the new row ranks first on a CPU
        assert clf.backend == "onnx-copy"
        assert clf.self_test().passed


def test_the_table_owns_names_files_and_hints():
    assert formats.names()[0] == "torch"
    assert {f.file for f in formats.FORMATS.values() if f.file} >= {
        "model.onnx",
        "model-folded.onnx",
        "model-int8.onnx",
        "model-fp16.plan",
        "model-int8.plan",
    }
    assert formats.get("onnx-int8").export_hint("B") == "edgeft export B --int8"
    with pytest.raises(UserError, match="unknown backend 'nope': choose from torch"):
        formats.get("nope")
    with pytest.raises(ValueError, match="already registered"):
        formats.register(formats.get("onnx"))
    assert [c[0] for c in formats.candidates("cpu")] == [
        "onnx-int8",
        "openvino-int8",
        "onnx",
        "openvino",
        "onnx-folded",
        "torch",
    ]
    assert formats.candidates("cuda")[:2] == [("trt-int8", "cuda"), ("trt-fp16", "cuda")]
