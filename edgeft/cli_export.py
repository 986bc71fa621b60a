"""``edgeft export``: options only; the work is :func:`edgeft.export.export_bundle`."""

from __future__ import annotations

from pathlib import Path

import typer


def register(app: typer.Typer) -> None:
    """Add the ``export`` command to ``app``."""

    @app.command()
    def export(
        bundle: Path = typer.Argument(..., help="Bundle folder (from edgeft finetune)."),
        onnx: bool = typer.Option(
            False, "--onnx", help="FP32 ONNX (the default when nothing else is asked)."
        ),
        int8: bool = typer.Option(
            False,
            "--int8",
            help="INT8: ONNX Runtime static quantization for CPUs; with --trt, a TensorRT INT8 engine.",
        ),
        trt: bool = typer.Option(
            False,
            "--trt",
            help="TensorRT engine, built here for this GPU (--fp16 by default, and/or --int8).",
        ),
        fp16: bool = typer.Option(False, "--fp16", help="With --trt: an FP16 engine."),
        opset: int = typer.Option(17, help="ONNX opset."),
        fold_normalize: bool = typer.Option(
            False,
            "--fold-normalize",
            help="Put mean/std into the graph: the device only resizes and scales to 0..1.",
        ),
        softmax: bool = typer.Option(
            False, "--softmax", help="Append a softmax: output 'probs' instead of 'logits'."
        ),
        calib_data: Path | None = typer.Option(
            None,
            "--calib-data",
            help="Calibration images (folder, or class folders); default: the bundle's training images.",
        ),
        calib_count: int = typer.Option(
            200, "--calib-count", help="Calibration images, sampled across classes (all if fewer)."
        ),
        calib_method: str = typer.Option(
            "percentile", "--calib-method", help="minmax | entropy | percentile (99.99th)."
        ),
        max_accuracy_drop: float = typer.Option(
            1.0,
            "--max-accuracy-drop",
            help="INT8: largest accuracy drop in points; sensitive layers stay float until it fits.",
        ),
        max_float_layers: int | None = typer.Option(
            None,
            "--max-float-layers",
            help="INT8: most layers kept in float (default a fifth of them).",
        ),
        min_batch: int | None = typer.Option(
            None, "--min-batch", help="TensorRT profile: smallest batch (1)."
        ),
        opt_batch: int | None = typer.Option(
            None, "--opt-batch", help="TensorRT profile: batch to optimise for (1)."
        ),
        max_batch: int | None = typer.Option(
            None, "--max-batch", help="TensorRT profile: largest batch (8; 1 on a DLA)."
        ),
        workspace: int | None = typer.Option(
            None, "--workspace", help="TensorRT builder workspace in MiB."
        ),
        timing_cache: Path | None = typer.Option(
            None, "--timing-cache", help="TensorRT timing cache file (read and updated)."
        ),
        dla_core: int | None = typer.Option(
            None, "--dla-core", help="Build for this DLA core (Jetson), GPU fallback on."
        ),
        trt_mode: str = typer.Option(
            "auto",
            "--trt-mode",
            help="auto | flags (TensorRT 8.5-10 builder flags + calibrator) | typed (strongly typed from FP16/Q-DQ ONNX).",
        ),
        no_check: bool = typer.Option(
            False, "--no-check", help="Skip the parity check against PyTorch."
        ),
        data: Path | None = typer.Option(
            None,
            "--data",
            help="Labelled validation folder, if the bundle's recorded images moved.",
        ),
        force: bool = typer.Option(False, "--force", help="Replace existing artifacts."),
        threads: int | None = typer.Option(
            None, "--threads", help="CPU threads for the checks (default: all)."
        ),
        quiet: bool = typer.Option(False, "--quiet", help="No progress or tables."),
    ):
        """Add ONNX / ONNX Runtime INT8 / TensorRT artifacts to a bundle, each checked against PyTorch."""
        from edgeft.console import quiet_if
        from edgeft.export import ExportOptions, export_bundle

        opts = ExportOptions(
            bundle=bundle,
            onnx=onnx,
            int8=int8,
            trt=trt,
            fp16=fp16,
            opset=opset,
            fold_normalize=fold_normalize,
            softmax=softmax,
            calib_data=calib_data,
            calib_count=calib_count,
            calib_method=calib_method,
            max_accuracy_drop=max_accuracy_drop,
            max_float_layers=max_float_layers,
            min_batch=min_batch,
            opt_batch=opt_batch,
            max_batch=max_batch,
            workspace=workspace,
            timing_cache=timing_cache,
            dla_core=dla_core,
            trt_mode=trt_mode,
            check=not no_check,
            data=data,
            force=force,
            threads=threads,
            quiet=quiet,
        )
        with quiet_if(quiet):
            export_bundle(opts)
