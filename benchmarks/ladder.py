"""The parity ladder: every backend against the PyTorch FP32 reference, on labelled images.

Each rung is one backend (``onnx``, ``onnx-int8``, ``trt-fp16`` ...) run on the same
labelled images as the reference, through the preprocessing that backend's artifact
records, and judged with :func:`edgeft.parity.compare` against a tolerance for its
precision. A backend whose artifact records a different preprocessing than the bundle's
gets that preprocessing here too: the benchmark feeds each model what a device reading
the artifact's record would feed it, so a wrong record shows up as an accuracy drop.

Tolerances (:data:`DEFAULT_TOLERANCES`, from :mod:`edgeft.parity`):

==========  ===============  =================  ============
precision   min agreement    max accuracy drop  max scaled diff
==========  ===============  =================  ============
fp32        99.5%            0.5 pp             1e-4 (|diff|/(1+|ref|))
fp16        99%              0.5 pp             not checked
int8        90%              1.0 pp             not checked
==========  ===============  =================  ============

An artifact exported with a tolerance of its own (its parity record's, e.g. ``edgeft
export --max-accuracy-drop 2``) is judged by that one, so export and bench agree on it.
Override them per precision or per backend with ``KEY.FIELD=VALUE`` strings
(:func:`parse_tolerances`), e.g. ``int8.max_accuracy_drop=2`` or
``onnx.max_scaled_diff=1e-3``; ``max_scaled_diff=none`` switches the logit check off.
"""

from __future__ import annotations

import dataclasses
import math

from edgeft.errors import UserError
from edgeft.parity import DEFAULT_TOLERANCES, Tolerance, precision_key, tolerance_for

__all__ = [
    "DEFAULT_TOLERANCES",
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
    "max_scaled_diff": "max_scaled_diff",
    "scaled_diff": "max_scaled_diff",
    "max_abs_diff": "max_scaled_diff",  # the name before the scaled bound; same role
    "abs_diff": "max_scaled_diff",
}
PRECISIONS = ("fp32", "fp16", "bf16", "int8")


def parse_tolerances(items: list[str] | None, backends=()) -> dict[str, dict]:
    """Parse ``KEY.FIELD=VALUE`` overrides into ``{key: {field: value}}``.

    ``KEY`` is a precision (fp32, fp16, int8) or a backend name; ``FIELD`` is
    ``min_agreement`` (a fraction 0..1), ``max_accuracy_drop`` (percentage points) or
    ``max_scaled_diff`` (a number, or ``none``).

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
                "max_accuracy_drop or max_scaled_diff"
            )
        value = value.strip()
        if fname == "max_scaled_diff" and value.lower() in ("none", "off"):
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
