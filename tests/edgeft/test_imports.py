"""The GPU stack is optional: every module, and `edgeft --help`, work without it.

Run in a subprocess whose ``sys.modules`` blocks TensorRT, TensorRT-RTX, cuda-python and
pycuda (an import of a blocked module raises ImportError), as on a CPU box or in CI.
"""

from __future__ import annotations

import subprocess
import sys
import textwrap

BLOCK = ("tensorrt", "tensorrt_rtx", "cuda", "pycuda", "pycuda.driver")
# A script meant to be run (it classifies the images on its command line), not imported.
SCRIPTS = ("deploy.example_classify", "edgeft.__main__")

SCRIPT = textwrap.dedent(
    """
    import importlib, pkgutil, sys
    for name in {block!r}:
        sys.modules[name] = None
    import edgeft, exporters, benchmarks, deploy
    names = []
    for pkg in (edgeft, exporters, benchmarks, deploy):
        for info in pkgutil.walk_packages(pkg.__path__, pkg.__name__ + "."):
            if info.name in {scripts!r}:
                continue
            importlib.import_module(info.name)
            names.append(info.name)
    leaked = sorted(m for m in {block!r} if sys.modules.get(m) is not None)
    assert not leaked, leaked
    print(len(names), "modules")
    from edgeft.cli import main
    sys.argv = ["edgeft", "--help"]
    sys.exit(main())
    """
)


def test_every_module_and_help_import_without_the_gpu_stack():
    proc = subprocess.run(
        [sys.executable, "-c", SCRIPT.format(block=BLOCK, scripts=SCRIPTS)],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    count = int(proc.stdout.split(" modules", 1)[0].split()[-1])
    assert count >= 40, proc.stdout[:500]
    for command in ("finetune", "predict", "export", "bench", "camera", "compare", "env"):
        assert command in proc.stdout, f"`edgeft --help` does not list {command}"
