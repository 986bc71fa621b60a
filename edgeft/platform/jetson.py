"""Detect an NVIDIA Jetson and describe it for a benchmark report.

Every bench report made on a Jetson records what decides its numbers: the module
(device-tree model), the L4T and JetPack release, the nvpmodel power mode and whether
clocks are locked (``jetson_clocks``). Each probe tolerates a missing file or tool:
its field is ``None`` and ``reasons[field]`` says why.

Sources read, and how:

* ``/etc/nv_tegra_release``: first line ``# R35 (release), REVISION: 4.1, GCID: ...,
  BOARD: t186ref, ...`` -> L4T 35.4.1.
* ``/proc/device-tree/model`` (or ``/sys/firmware/devicetree/base/model``): NUL-ended
  string such as ``NVIDIA Jetson Nano Developer Kit``. Not every model says "Jetson"
  (an Orin NX devkit reports ``NVIDIA Orin NX Developer Kit``), so :func:`is_jetson`
  also accepts ``nvidia,tegra`` in ``/proc/device-tree/compatible``.
* JetPack: the version of the ``nvidia-jetpack`` package (``dpkg-query``), e.g.
  ``4.5-b129`` -> 4.5. It is absent when only the BSP was flashed; then
  :data:`L4T_TO_JETPACK` maps the L4T release (NVIDIA's JetPack archive,
  https://developer.nvidia.com/embedded/jetpack-archive), and an unknown revision of a
  known L4T major gives the family (R35 -> "5.x") with ``approximate: True``.
* ``nvpmodel -q``: ``NV Power Mode: MAXN`` then the mode id on its own line.
* Clocks: ``jetson_clocks --show`` (root only) lists each CPU's ``MinFreq``/``MaxFreq``
  and the GPU's. ``jetson_clocks`` locks clocks by raising each minimum to the maximum,
  so "locked" means every online CPU and the GPU have MinFreq == MaxFreq. Without root,
  the same comparison is made from sysfs: ``cpu*/cpufreq/scaling_{min,max}_freq`` and
  the GPU devfreq node's ``{min,max}_freq`` under ``/sys/class/devfreq``.
* Throttle temperatures: the kernel's ``passive`` trip points
  (``/sys/class/thermal/thermal_zone*/trip_point_*``), where passive cooling (clock
  reduction) begins; zone ``CPU-therm`` becomes tegrastats sensor ``cpu``.

Functions take ``root`` (a directory standing for ``/``) and ``runner`` (``argv ->
(returncode, output)`` or ``None`` when the tool is missing) so tests can feed
recorded outputs.
"""

from __future__ import annotations

import os
import re

from edgeft.errors import UserError
from edgeft.platform.jetson_tools import (  # noqa: F401  (re-exported: the probe's public API)
    Runner,
    _read,
    clocks_from_sysfs,
    clocks_locked,
    parse_jetson_clocks_show,
    parse_nvpmodel_query,
    power_mode,
    run_command,
    throttle_trip_points_c,
)

_RELEASE_RE = re.compile(r"#\s*R(\d+)\s*\(release\),\s*REVISION:\s*(\d+(?:\.\d+)*)")
_BOARD_RE = re.compile(r"BOARD:\s*([^,\s]+)")
_MODEL_WORDS_RE = re.compile(r"\b(jetson|tegra|orin|xavier|thor)\b", re.IGNORECASE)

#: L4T release -> JetPack, from NVIDIA's JetPack archive (production releases; DP =
#: developer preview).
L4T_TO_JETPACK = {
    "32.1.0": "4.2",
    "32.2.0": "4.2.1",
    "32.2.1": "4.2.2",
    "32.2.3": "4.2.3",
    "32.3.1": "4.3",
    "32.4.2": "4.4 DP",
    "32.4.3": "4.4",
    "32.4.4": "4.4.1",
    "32.5.0": "4.5",
    "32.5.1": "4.5.1",
    "32.5.2": "4.5.1",
    "32.6.1": "4.6",
    "32.7.1": "4.6.1",
    "32.7.2": "4.6.2",
    "32.7.3": "4.6.3",
    "32.7.4": "4.6.4",
    "32.7.5": "4.6.5",
    "32.7.6": "4.6.6",
    "34.1.0": "5.0 DP",
    "34.1.1": "5.0.1 DP",
    "35.1.0": "5.0.2",
    "35.2.1": "5.1",
    "35.3.1": "5.1.1",
    "35.4.1": "5.1.2",
    "35.5.0": "5.1.3",
    "35.6.0": "5.1.4",
    "35.6.1": "5.1.5",
    "36.2.0": "6.0 DP",
    "36.3.0": "6.0",
    "36.4.0": "6.1",
    "36.4.3": "6.2",
    "36.4.4": "6.2.1",
    "38.2.0": "7.0",
}
#: L4T major -> JetPack family, for revisions not in :data:`L4T_TO_JETPACK`.
L4T_FAMILY = {32: "4.x", 34: "5.x", 35: "5.x", 36: "6.x", 38: "7.x", 39: "7.x"}


class NotAJetsonError(UserError):
    """``--device jetson`` was asked for on a machine that is not a Jetson."""


def read_model(root: str = "/") -> str | None:
    """The device-tree model string (NUL and whitespace stripped), or None."""
    text = _read(root, "/proc/device-tree/model", "/sys/firmware/devicetree/base/model")
    if text is None:
        return None
    return text.replace("\x00", "").strip() or None


def parse_nv_tegra_release(text: str) -> dict | None:
    """Parse ``/etc/nv_tegra_release``: ``{"version": "35.4.1", "major": 35, ...}``."""
    m = _RELEASE_RE.search(text)
    if not m:
        return None
    revision = m.group(2) if m.group(2).count(".") else f"{m.group(2)}.0"
    board = _BOARD_RE.search(text)
    return {
        "version": f"{m.group(1)}.{revision}",
        "release": f"R{m.group(1)}.{revision}",
        "major": int(m.group(1)),
        "board": board.group(1) if board else None,
    }


def is_jetson(root: str = "/") -> bool:
    """True when this machine is an NVIDIA Jetson (Tegra) board."""
    if os.path.isfile(os.path.join(root, "etc/nv_tegra_release")):
        return True
    compatible = _read(root, "/proc/device-tree/compatible") or ""
    if "nvidia,tegra" in compatible:
        return True
    return bool(_MODEL_WORDS_RE.search(read_model(root) or ""))


def jetpack_version(l4t: dict | None, runner: Runner = run_command) -> tuple[dict | None, str]:
    """JetPack from the ``nvidia-jetpack`` package, else from the L4T table."""
    result = runner(["dpkg-query", "-W", "-f=${Version}", "nvidia-jetpack"])
    if result is not None and result[0] == 0 and (m := re.match(r"\s*(\d+(?:\.\d+)*)", result[1])):
        return {
            "version": m.group(1),
            "source": f"dpkg nvidia-jetpack {result[1].strip()}",
            "approximate": False,
        }, ""
    why = "dpkg-query not found" if result is None else "package nvidia-jetpack not installed"
    if l4t is None:
        return None, f"{why}, and L4T release unknown"
    if l4t["version"] in L4T_TO_JETPACK:
        return {
            "version": L4T_TO_JETPACK[l4t["version"]],
            "approximate": False,
            "source": f"L4T {l4t['version']} table ({why})",
        }, ""
    if l4t["major"] in L4T_FAMILY:
        return {
            "version": L4T_FAMILY[l4t["major"]],
            "approximate": True,
            "source": f"L4T R{l4t['major']} family ({why}; {l4t['version']} not in table)",
        }, ""
    return None, f"{why}, and L4T {l4t['version']} is not in the table"


def jetson_info(root: str = "/", runner: Runner = run_command) -> dict | None:
    """Describe this Jetson for a bench report, or ``None`` when it is not a Jetson."""
    if not is_jetson(root):
        return None
    reasons: dict[str, str] = {}
    model = read_model(root)
    if model is None:
        reasons["model"] = "/proc/device-tree/model not readable"
    release = _read(root, "/etc/nv_tegra_release")
    l4t = parse_nv_tegra_release(release) if release is not None else None
    if l4t is None:
        reasons["l4t"] = (
            "/etc/nv_tegra_release missing"
            if release is None
            else "/etc/nv_tegra_release has no '# Rnn (release), REVISION:' line"
        )
    info = {"model": model, "l4t": l4t}
    for field, (value, why) in (
        ("jetpack", jetpack_version(l4t, runner)),
        ("power_mode", power_mode(runner)),
        ("clocks", clocks_locked(root, runner)),
    ):
        info[field] = value
        if value is None:
            reasons[field] = why
    info["throttle_trip_points_c"] = throttle_trip_points_c(root)
    info["reasons"] = reasons
    return info


def require_jetson(root: str = "/", runner: Runner = run_command) -> dict:
    """:func:`jetson_info`, or :class:`NotAJetsonError` with a one-line explanation."""
    info = jetson_info(root, runner)
    if info is None:
        raise NotAJetsonError(
            "--device jetson needs an NVIDIA Jetson: this machine has no /etc/nv_tegra_release "
            "and its device tree names no Jetson/Tegra board. Use --device cpu or --device cuda "
            "here, or run edgeft bench on the Jetson itself."
        )
    return info
