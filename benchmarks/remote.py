"""``edgeft bench --remote USER@HOST[:PORT]``: the same bench on another machine, over SSH.

A laptop drives a Jetson (or any box with edgeft): one SSH probe checks that the remote
``edgeft`` has a ``bench`` command and makes a private temporary folder there; the bundle
and the labelled images are copied into it (rsync where both ends have it, else a tar
stream over the same SSH connection); ``edgeft bench --quiet`` runs there; its report
folder comes back; the remote folder is removed. Paths in the report are mapped back to
this machine's files, so a remote report reads like a local one (only timings and the
environment differ) and its plots and contact sheets are drawn here.

Authentication is by key only (``BatchMode=yes``: ssh never prompts). Host, port and key
come from ``--remote``/``--ssh-key`` and the user's ``~/.ssh/config``; anything else ssh
takes can be given in ``$EDGEFT_SSH_OPTIONS`` (e.g. ``-o UserKnownHostsFile=...``). A
wrong host, a refused key, an unknown host key or a missing remote edgeft each give one
line that says what to do.
"""

from __future__ import annotations

import os
import shlex
import shutil
import tempfile
import time
from pathlib import Path

from benchmarks.options import REMOTE_ONLY
from benchmarks.remote_ssh import Remote
from benchmarks.report import load_report, print_report, raise_on_verdict, write_bench_reports
from edgeft.bundle import Bundle
from edgeft.console import console
from edgeft.errors import UserError
from edgeft.labels import label_problem
from edgeft.options import to_json
from edgeft.parity import bundle_valid_samples


def safe_child(root: Path, name: str) -> Path:
    """``root / name`` for a plain folder name only: labels and file names that come from a
    bundle (which may come from someone else) never reach outside the staging folder.

    Raises:
        UserError: ``name`` is not a plain name (absolute, ``..``, a separator).
    """
    why = label_problem(name)
    path = root / name
    if why or path.resolve().parent != root.resolve():
        raise UserError(f"refusing to stage {name!r} from the bundle: {why or 'not a plain name'}")
    return path


def _stage_split(bundle, staging: Path) -> dict[str, str]:
    """The bundle's validation images as ``label/NNNN_name`` symlinks; returns rel -> local path."""

    mapping = {}
    for i, (path, label) in enumerate(bundle_valid_samples(bundle)):
        folder = safe_child(staging, label)
        folder.mkdir(exist_ok=True)
        link = safe_child(folder, f"{i:05d}_{Path(path).name}")
        os.symlink(Path(path).resolve(), link)
        mapping[f"{label}/{link.name}"] = str(path)
    return mapping


def remote_options(opts, folder: str) -> str:
    """The options the remote ``edgeft bench`` runs with, as JSON: this bench's own options
    object with the remote paths (no command line is rebuilt; see :mod:`edgeft.options`)."""
    from dataclasses import replace

    remote = replace(
        opts,
        bundle=Path(f"{folder}/bundle"),
        data=Path(f"{folder}/data"),
        out=Path(f"{folder}/out"),
        quiet=True,
        trust_modified=opts.trust_modified,
    )
    return to_json(remote, exclude=REMOTE_ONLY)


def _local_inputs(bundle, opts, tmp: Path) -> tuple[Path, dict[str, str]]:
    """The labelled images to copy over, checked before any connection: ``--data``, or the
    bundle's validation split staged as links in ``tmp``. Returns (folder, path mapping)."""
    if opts.data is not None:
        data = Path(opts.data).expanduser()
        if not data.is_dir():
            raise UserError(f"--data {data} is not a folder: pass a folder of class folders")
        return data, {"": str(data.resolve())}
    staging = tmp / "data"
    staging.mkdir()
    return staging, _stage_split(bundle, staging)


def _bench_there(remote, opts, folder: str, tmp: Path) -> None:
    """Run ``edgeft bench`` on the remote with this bench's options sent as JSON on stdin."""
    options = tmp / "options.json"
    options.write_text(remote_options(opts, folder))
    cmd = f"cd {shlex.quote(folder)} && {remote.remote_edgeft()} bench --options-json /dev/stdin"
    with open(options, "rb") as stdin:
        done = remote.run(cmd, stdin=stdin, what="edgeft bench")
    if done.returncode not in (0, 3):
        err = done.stderr.decode(errors="replace")
        said = [ln for ln in err.splitlines() if ln.startswith("edgeft: error:")]
        why = (
            said[-1][len("edgeft: error:") :].strip()
            if said
            else (err.strip().splitlines() or ["?"])[-1]
        )
        raise UserError(f"edgeft bench on {remote.host} failed (exit {done.returncode}): {why}")


def run_remote(opts, method: str | None = None) -> dict:
    """Run ``opts`` (a validated :class:`benchmarks.bench.BenchOptions`) on ``opts.remote``.

    Args:
        method: ``"rsync"`` or ``"tar"`` to force a copy method (default: rsync where both
            ends have it).

    Returns:
        The report, with paths mapped to this machine and a ``remote`` section.
    """

    bundle = Bundle.load(opts.bundle, opts.trust_modified)
    remote = Remote(opts.remote, opts.ssh_key, opts.remote_edgeft)
    out_dir = Path(opts.out) if opts.out else Path(f"bench-{bundle.path.name}-{opts.device}")
    t0 = time.perf_counter()
    times = {}
    with tempfile.TemporaryDirectory(prefix="edgeft-remote-") as tmp:
        tmp = Path(tmp)
        images, mapping = _local_inputs(bundle, opts, tmp)  # before any connection
        folder, remote_rsync = remote.probe()
        method = method or ("rsync" if remote_rsync and shutil.which("rsync") else "tar")
        try:
            console().print(
                f"copying {bundle.path} and the labelled images to {remote.host}:{folder} ({method})"
            )
            remote.push(bundle.path, f"{folder}/bundle", method)
            remote.push(images, f"{folder}/data", method)
            times["copy_s"] = round(time.perf_counter() - t0, 2)
            console().print(f"running edgeft bench on {remote.host}")
            t1 = time.perf_counter()
            _bench_there(remote, opts, folder, tmp)
            times["run_s"] = round(time.perf_counter() - t1, 2)
            remote.pull(f"{folder}/out", tmp / "out", method)
        finally:
            remote.cleanup(folder)
        report = load_report(tmp / "out" / "report.json")
    _localise(report, folder, bundle, mapping)
    report["out"] = str(out_dir)
    report["remote"] = {
        "host": remote.host,
        "target": opts.remote,
        "edgeft_command": opts.remote_edgeft,
        "copy": method,
        "remote_folder": folder,
        "removed": True,
        "seconds": {**times, "total_s": round(time.perf_counter() - t0, 2)},
    }
    write_bench_reports(report, out_dir)
    if not opts.quiet:
        print_report(report)
    raise_on_verdict(report)
    return report


def _localise(report: dict, folder: str, bundle, mapping: dict[str, str]) -> None:
    """Map the remote's paths in ``report`` to this machine's bundle and image files."""
    data_prefix = f"{folder}/data/"

    def local(path: str | None) -> str | None:
        if not path or not path.startswith(data_prefix):
            return path
        rel = path[len(data_prefix) :]
        if "" in mapping:  # --data was copied as a whole
            return str(Path(mapping[""]) / rel)
        return mapping.get(rel, path)

    report["bundle"]["remote_path"] = report["bundle"]["path"]
    report["bundle"]["path"] = str(bundle.path.resolve())
    report["data"]["remote_source"] = report["data"]["source"]
    report["data"]["source"] = (
        "the bundle's validation split (split.json)"
        if "" not in mapping
        else local(report["data"]["source"] + "/") or report["data"]["source"]
    ).rstrip("/")
    report["data"]["skipped"] = [[local(p), why] for p, why in report["data"]["skipped"]]
    for row in report["ladder"]["rows"]:
        for f in row["figures"]["flipped"]:
            f["path"] = local(f["path"])
    opts = report.get("options") or {}
    opts["bundle"], opts["data"] = str(bundle.path), mapping.get("")
