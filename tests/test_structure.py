"""The project's structure, as rules a change cannot break without a test failing: layers
that point one way (import-linter contracts in pyproject.toml), and modules and functions
small enough to read."""

from __future__ import annotations

import ast
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import tomllib

ROOT = Path(__file__).resolve().parents[1]
PACKAGES = ("edgeft", "exporters", "benchmarks", "deploy")
MAX_MODULE_LINES = 350
MAX_FUNCTION_LINES = 60
# path or "path:function" -> why it may be longer (one line each).
ALLOWED: dict[str, str] = {
    "edgeft/formats.py": "the one formats table: a new form is a row here (13 rows), by design",
}


def _lint_imports(cwd: Path) -> subprocess.CompletedProcess:
    exe = Path(sys.executable).with_name("lint-imports")
    env = {"PYTHONPATH": str(cwd), "PATH": str(exe.parent)}
    return subprocess.run(
        [str(exe), "--no-cache"], cwd=cwd, capture_output=True, text=True, timeout=300, env=env
    )


def test_layer_contracts_hold():
    proc = _lint_imports(ROOT)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-2000:]
    assert "0 broken" in proc.stdout


def test_every_core_module_is_under_the_core_contracts():
    config = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["importlinter"]
    core = {
        p.stem if p.is_file() else p.name
        for p in (ROOT / "edgeft").iterdir()
        if (p.suffix == ".py" or (p / "__init__.py").is_file()) and not p.name.startswith("_")
    }
    first = config["contracts"][0]
    assert first["forbidden_modules"] == ["edgeft.cli", "deploy", "benchmarks", "exporters"]
    assert {m.removeprefix("edgeft.") for m in first["source_modules"]} == core - {"cli"}


def test_an_upward_import_breaks_the_check(tmp_path):
    for pkg in PACKAGES:
        shutil.copytree(
            ROOT / pkg, tmp_path / pkg, ignore=shutil.ignore_patterns("__pycache__", "results")
        )
    shutil.copy(ROOT / "pyproject.toml", tmp_path)
    assert _lint_imports(tmp_path).returncode == 0
    bundle = tmp_path / "edgeft" / "bundle.py"
    # a function-local import counts like one at the top
    bundle.write_text(
        bundle.read_text() + "\n\ndef _up():\n    import exporters.pipeline  # noqa\n"
    )
    proc = _lint_imports(tmp_path)
    assert proc.returncode != 0
    assert "edgeft.bundle -> exporters.pipeline" in proc.stdout
    assert (
        "the edgeft core never imports the CLI, deploy, benchmarks or exporters BROKEN"
        in proc.stdout
    )


def _sizes():
    for pkg in PACKAGES:
        for path in sorted((ROOT / pkg).rglob("*.py")):
            rel = str(path.relative_to(ROOT))
            source = path.read_text()
            yield rel, None, len(source.splitlines())
            for node in ast.walk(ast.parse(source)):
                if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
                    yield rel, node.name, node.end_lineno - node.lineno + 1


@pytest.mark.parametrize("kind", ["module", "function"])
def test_modules_and_functions_stay_small(kind):
    over = []
    for rel, fn, n in _sizes():
        limit = MAX_MODULE_LINES if fn is None else MAX_FUNCTION_LINES
        key = rel if fn is None else f"{rel}:{fn}"
        if (fn is None) == (kind == "module") and n > limit and key not in ALLOWED:
            over.append(f"{key} ({n} lines > {limit})")
    assert not over, "split these, or allow them in ALLOWED with a reason:\n" + "\n".join(over)


def test_allowlist_entries_exist_and_give_a_reason():
    known = {rel if fn is None else f"{rel}:{fn}" for rel, fn, _ in _sizes()}
    for key, why in ALLOWED.items():
        assert key in known, f"{key} is allowed but does not exist"
        assert why.strip() and "\n" not in why, key
