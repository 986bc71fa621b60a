"""The parity ladder: every backend against the PyTorch FP32 reference, on labelled images.

Each rung is one backend (``onnx``, ``onnx-int8``, ``trt-fp16`` ...) run on the same
labelled images as the reference, through the preprocessing that backend's artifact
records, and judged with :func:`edgeft.parity.compare` against a tolerance for its
precision. A backend whose artifact records a different preprocessing than the bundle's
gets that preprocessing here too: the benchmark feeds each model what a device reading
the artifact's record would feed it, so a wrong record shows up as an accuracy drop.

Tolerances (:data:`DEFAULT_TOLERANCES`, from :mod:`edgeft.parity`):

==========  ===============  =================  ============
precision   min agreement    max accuracy drop  max |diff|
==========  ===============  =================  ============
fp32        100%             0 pp               1e-4 (logits)
fp16        99%              0.5 pp             not checked
int8        90%              1.0 pp             not checked
==========  ===============  =================  ============

An artifact exported with a tolerance of its own (its parity record's, e.g. ``edgeft
export --max-accuracy-drop 2``) is judged by that one, so export and bench agree on it.
Override them per precision or per backend with ``KEY.FIELD=VALUE`` strings
(:func:`parse_tolerances`), e.g. ``int8.max_accuracy_drop=2`` or
``onnx.max_abs_diff=1e-3``; ``max_abs_diff=none`` switches the logit check off.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass, field
from pathlib import Path

from edgeft.errors import UserError
from edgeft.parity import DEFAULT_TOLERANCES, Tolerance, bundle_valid_samples, tolerance_for
from edgeft.preprocess import is_image_file

__all__ = [
    "DEFAULT_TOLERANCES",
    "LabelledSet",
    "labelled_samples",
    "parse_tolerances",
    "backend_tolerance",
    "ladder_row",
    "export_agreement",
]

_FIELD_ALIASES = {
    "min_agreement": "min_agreement",
    "agreement": "min_agreement",
    "max_accuracy_drop": "max_accuracy_drop",
    "accuracy_drop": "max_accuracy_drop",
    "drop": "max_accuracy_drop",
    "max_abs_diff": "max_abs_diff",
    "abs_diff": "max_abs_diff",
}
PRECISIONS = ("fp32", "fp16", "int8")


@dataclass
class LabelledSet:
    """The labelled images a bench runs on, before decoding.

    Attributes:
        samples: ``(path, label)`` pairs whose label the bundle knows.
        source: where they came from, for the report.
        unknown: labels found in the data that the bundle does not know -> image count
            (excluded).
        ignored: files skipped because their extension is not an image's.
    """

    samples: list[tuple[Path, str]]
    source: str
    unknown: dict[str, int] = field(default_factory=dict)
    ignored: int = 0


def labelled_samples(bundle, data: Path | None) -> LabelledSet:
    """Labelled images from ``data`` (a folder of class folders), or the bundle's validation split.

    A ``valid/`` (or ``val/``) subfolder is used when ``data`` itself holds no class folder
    named after a label. Class folders whose name is not a label of the bundle are counted
    and excluded.

    Raises:
        UserError: the folder is missing, holds no class folders, or no image of a known label.
    """
    if data is None:
        return LabelledSet(
            bundle_valid_samples(bundle), "the bundle's validation split (split.json)"
        )
    data = Path(data).expanduser()
    if not data.is_dir():
        raise UserError(
            f"--data {data} is not a folder: pass a folder of class folders (<label>/<images>)"
        )
    labels = set(bundle.labels)

    def class_dirs(root: Path) -> list[Path]:
        return sorted(p for p in root.iterdir() if p.is_dir() and not p.name.startswith("."))

    root = data
    if not any(d.name in labels for d in class_dirs(data)):
        for sub in ("valid", "val"):
            if (data / sub).is_dir() and any(d.name in labels for d in class_dirs(data / sub)):
                root = data / sub
                break
    dirs = class_dirs(root)
    if not dirs:
        raise UserError(
            f"--data {data} holds no class folders: expected {data}/<label>/<images> "
            f"with labels from the bundle ({_some(bundle.labels)})"
        )
    samples, unknown, ignored = [], {}, 0
    for d in dirs:
        files = sorted(p for p in d.rglob("*") if p.is_file() and not p.name.startswith("."))
        images = [p for p in files if is_image_file(p)]
        ignored += len(files) - len(images)
        if d.name in labels:
            samples += [(p, d.name) for p in images]
        else:
            unknown[d.name] = len(images)
    if not samples:
        if unknown:
            raise UserError(
                f"none of the class folders in {root} ({_some(sorted(unknown))}) is a label of "
                f"the bundle ({_some(bundle.labels)}): name the folders after the bundle's labels"
            )
        raise UserError(f"no labelled images in {root}: expected {root}/<label>/<image files>")
    return LabelledSet(samples, str(root), unknown, ignored)


def _some(items, n: int = 6) -> str:
    items = list(items)
    return ", ".join(items[:n]) + (f" ... ({len(items)} in all)" if len(items) > n else "")


def parse_tolerances(items: list[str] | None, backends=()) -> dict[str, dict]:
    """Parse ``KEY.FIELD=VALUE`` overrides into ``{key: {field: value}}``.

    ``KEY`` is a precision (fp32, fp16, int8) or a backend name; ``FIELD`` is
    ``min_agreement`` (a fraction 0..1), ``max_accuracy_drop`` (percentage points) or
    ``max_abs_diff`` (a number, or ``none``).

    Raises:
        UserError: a malformed item, unknown key or field, or a value out of range.
    """
    out: dict[str, dict] = {}
    for item in items or []:
        key_field, eq, value = item.partition("=")
        key, dot, name = key_field.strip().rpartition(".")
        if not eq or not dot:
            raise UserError(
                f"--tolerance {item!r}: expected KEY.FIELD=VALUE, e.g. int8.max_accuracy_drop=2"
            )
        if key not in PRECISIONS and key not in backends:
            raise UserError(
                f"--tolerance {item!r}: {key!r} is neither a precision ({', '.join(PRECISIONS)}) "
                f"nor a backend ({', '.join(backends)})"
            )
        fname = _FIELD_ALIASES.get(name.strip().replace("-", "_"))
        if fname is None:
            raise UserError(
                f"--tolerance {item!r}: unknown field {name!r}: use min_agreement, "
                "max_accuracy_drop or max_abs_diff"
            )
        value = value.strip()
        if fname == "max_abs_diff" and value.lower() in ("none", "off"):
            parsed = None
        else:
            try:
                parsed = float(value)
            except ValueError:
                raise UserError(f"--tolerance {item!r}: {value!r} is not a number") from None
            if not math.isfinite(parsed) or parsed < 0 or (fname == "min_agreement" and parsed > 1):
                raise UserError(
                    f"--tolerance {item!r}: {fname} must be "
                    + ("a fraction between 0 and 1" if fname == "min_agreement" else "0 or more")
                )
        out.setdefault(key, {})[fname] = parsed
    return out


def precision_key(precision: str) -> str:
    """fp32, fp16 or int8 for a precision string such as ``fp16-autocast``."""
    return "int8" if "int8" in precision else "fp16" if "16" in precision else "fp32"


def backend_tolerance(
    backend: str,
    precision: str,
    overrides: dict[str, dict] | None = None,
    recorded: dict | None = None,
) -> Tolerance:
    """A rung's tolerance, each layer replacing fields of the one before: the default of
    ``precision``; the tolerance the artifact passed at export (``recorded``: its parity
    record's, e.g. ``edgeft export --max-accuracy-drop``), so that bench and export judge
    one artifact alike; ``--tolerance`` overrides for the precision; those for the backend.
    """
    overrides = overrides or {}
    tol = tolerance_for(precision)
    known = {f.name for f in dataclasses.fields(Tolerance)}
    fields = {k: v for k, v in (recorded or {}).items() if k in known}
    fields.update({**overrides.get(precision_key(precision), {}), **overrides.get(backend, {})})
    return dataclasses.replace(tol, **fields) if fields else tol


def tolerance_source(
    backend: str, precision: str, overrides: dict | None, recorded: dict | None
) -> str:
    """Where a rung's tolerance came from, for the report."""
    if (overrides or {}).get(backend) or (overrides or {}).get(precision_key(precision)):
        return "--tolerance"
    return "export record" if recorded else "default"


def ladder_row(
    backend: str,
    precision: str,
    figures: dict,
    tol: Tolerance,
    *,
    pp_source: str = "bundle",
    pp_differs: list[str] | None = None,
    record: dict | None = None,
    tolerance_from: str = "default",
) -> dict:
    """One rung of the ladder: figures, tolerance, breaches, and how they relate to export."""
    from edgeft.parity import breaches

    found = breaches(figures, tol)
    return {
        "backend": backend,
        "precision": precision,
        "tolerance": tol.to_dict(),
        "tolerance_from": tolerance_from,
        "figures": figures,
        "breaches": found,
        "passed": not found,
        "preprocessing": {"source": pp_source, "differs_from_bundle": pp_differs or []},
        "export_parity": export_agreement(figures, (record or {}).get("parity")),
    }


def export_agreement(figures: dict, parity: dict | None) -> dict | None:
    """Compare bench figures with the parity figures recorded at export time.

    They agree when both were measured on the same number of images and accuracy and
    agreement match to within one image, and the logit error to within 1e-4 or 20%
    (thread scheduling may change float sums). Different image sets are reported as not
    comparable, not as disagreement.
    """
    if not isinstance(parity, dict) or "accuracy" not in parity:
        return None
    out = {
        k: parity.get(k) for k in ("n", "accuracy", "agreement", "max_abs_diff", "accuracy_drop_pp")
    }
    n = figures["n"]
    if parity.get("n") != n:
        out.update(
            comparable=False,
            agrees=None,
            note=f"export measured {parity.get('n')} images, bench {n}: different image sets",
        )
        return out
    one = 1.0 / n + 1e-12
    ok = abs(parity["accuracy"] - figures["accuracy"]) <= one
    if parity.get("agreement") is not None:
        ok = ok and abs(parity["agreement"] - figures["agreement"]) <= one
    if parity.get("max_abs_diff") is not None:
        a, b = parity["max_abs_diff"], figures["max_abs_diff"]
        ok = ok and abs(a - b) <= max(1e-4, 0.2 * max(a, b))
    out.update(comparable=True, agrees=bool(ok))
    return out
