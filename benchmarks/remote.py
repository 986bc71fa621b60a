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

import contextlib
import os
import re
import shlex
import shutil
import subprocess
import tempfile
import time
from pathlib import Path

from edgeft.errors import UserError

_MARK = "__edgeft_probe__"


def parse_target(target: str) -> tuple[str, str, int | None]:
    """``user@host[:port]`` -> ``(destination, host, port)`` (``[::1]`` style IPv6 allowed)."""
    m = re.fullmatch(
        r"(?:(?P<user>[^@\s:]+)@)?(?P<host>\[[^\]]+\]|[^@\s:\[\]]+)(?::(?P<port>\d+))?",
        target.strip(),
    )
    if not m:
        raise UserError(f"--remote {target!r}: expected USER@HOST or USER@HOST:PORT")
    host = m.group("host").strip("[]")
    dest = f"{m.group('user')}@{host}" if m.group("user") else host
    return dest, host, int(m.group("port")) if m.group("port") else None


class Remote:
    """ssh/rsync/tar command lines for one destination, and error lines a person can act on."""

    def __init__(self, target: str, key: Path | None = None, edgeft: str = "edgeft"):
        self.target = target
        self.dest, self.host, self.port = parse_target(target)
        self.key = Path(key).expanduser() if key else None
        if self.key is not None and not self.key.is_file():
            raise UserError(f"--ssh-key {self.key} does not exist")
        self.edgeft = edgeft
        self.options = [
            "-o",
            "BatchMode=yes",
            "-o",
            "ConnectTimeout=15",
            "-o",
            "ServerAliveInterval=15",
        ]
        if self.port:
            self.options += ["-p", str(self.port)]
        if self.key:
            self.options += ["-i", str(self.key), "-o", "IdentitiesOnly=yes"]
        self.options += shlex.split(os.environ.get("EDGEFT_SSH_OPTIONS", ""))

    def ssh_argv(self, command: str) -> list[str]:
        return ["ssh", *self.options, self.dest, command]

    def run(
        self,
        command: str,
        *,
        stdin=None,
        stdout=subprocess.PIPE,
        timeout: float | None = None,
        what: str = "ssh",
    ) -> subprocess.CompletedProcess:
        """Run ``command`` on the remote shell; ssh's own failures (exit 255) become one line."""
        try:
            done = subprocess.run(
                self.ssh_argv(command),
                stdin=stdin if stdin is not None else subprocess.DEVNULL,
                stdout=stdout,
                stderr=subprocess.PIPE,
                timeout=timeout,
            )
        except FileNotFoundError:
            raise UserError(
                "ssh is not installed here: install an OpenSSH client to use --remote"
            ) from None
        except subprocess.TimeoutExpired:
            raise UserError(
                f"{what} on {self.target} took longer than {timeout:.0f} s: is the host busy?"
            ) from None
        if done.returncode == 255:
            raise UserError(self.explain(done.stderr.decode(errors="replace")))
        return done

    def explain(self, stderr: str) -> str:
        """One line for an ssh failure, from what ssh printed."""
        lines = [
            ln.strip()
            for ln in stderr.splitlines()
            if ln.strip() and not ln.startswith("Warning: Permanently")
        ]
        last = lines[-1] if lines else "no message"
        text = " ".join(lines)
        if "Permission denied" in text:
            return (
                f"{self.host} refused the SSH key for {self.dest} (key authentication only, no passwords): "
                f"add your public key there (ssh-copy-id {self.dest}) or pass --ssh-key"
            )
        if (
            "Host key verification failed" in text
            or "REMOTE HOST IDENTIFICATION HAS CHANGED" in text
        ):
            return (
                f"the SSH host key of {self.host} is unknown or has changed: check it and accept it once "
                f"with `ssh {self.dest}`"
            )
        if "Could not resolve hostname" in text or "Name or service not known" in text:
            return f"cannot resolve host {self.host!r}: check the name in --remote"
        if "Connection refused" in text:
            return f"{self.host} refused the connection on port {self.port or 22}: is sshd running there?"
        if any(w in text for w in ("timed out", "No route to host", "Network is unreachable")):
            return f"cannot reach {self.host}: {last}"
        return f"ssh to {self.target} failed: {last}"

    def remote_edgeft(self) -> str:
        """The edgeft command as a remote shell word (``~/`` expands on the remote side)."""
        if self.edgeft.startswith("~/"):
            return '"$HOME"/' + shlex.quote(self.edgeft[2:])
        return shlex.quote(self.edgeft)

    def probe(self) -> tuple[str, bool]:
        """Check the remote edgeft and make a temporary folder: ``(folder, remote has rsync)``."""
        exe = self.remote_edgeft()
        script = (
            f"command -v {exe} >/dev/null 2>&1 || {{ echo {_MARK}no-edgeft; exit 0; }}; "
            f"{exe} bench --help >/dev/null 2>&1 || {{ echo {_MARK}no-bench; exit 0; }}; "
            f"command -v rsync >/dev/null 2>&1 && echo {_MARK}rsync; "
            f'mktemp -d "${{TMPDIR:-/tmp}}/edgeft-bench.XXXXXX"'
        )
        out = self.run(script, timeout=120, what="the probe").stdout.decode(errors="replace")
        if f"{_MARK}no-edgeft" in out:
            raise UserError(
                f"edgeft is not installed on {self.host} (no {self.edgeft!r} on the PATH of a "
                f"non-interactive ssh shell): pip install 'edgeft[cpu]' there, or pass "
                f"--remote-edgeft /path/to/edgeft"
            )
        if f"{_MARK}no-bench" in out:
            raise UserError(
                f"{self.edgeft} on {self.host} has no working `bench` command: upgrade edgeft there"
            )
        folder = out.strip().splitlines()[-1].strip() if out.strip() else ""
        if not re.fullmatch(r"/\S*/edgeft-bench\.\w+", folder):
            raise UserError(
                f"could not make a temporary folder on {self.host} (got {folder[:80]!r})"
            )
        return folder, f"{_MARK}rsync" in out

    def push(self, src: Path, dst: str, method: str) -> None:
        """Copy folder ``src`` to ``dst`` on the remote (symlinks are followed)."""
        if method == "rsync":
            self._rsync([f"{src}/", f"{self.dest}:{dst}/"])
            return
        tar = subprocess.Popen(["tar", "-ch", "-C", str(src), "."], stdout=subprocess.PIPE)
        try:
            done = self.run(
                f"mkdir -p {shlex.quote(dst)} && tar -x -C {shlex.quote(dst)}",
                stdin=tar.stdout,
                what="copying",
            )
        finally:
            tar.stdout.close()
            tar.wait()
        if done.returncode or tar.returncode:
            raise UserError(
                f"copying {src} to {self.host} failed: {done.stderr.decode(errors='replace').strip()[-200:]}"
            )

    def pull(self, src: str, dst: Path, method: str) -> None:
        """Copy remote folder ``src`` into local folder ``dst``."""
        dst.mkdir(parents=True, exist_ok=True)
        if method == "rsync":
            self._rsync([f"{self.dest}:{src}/", f"{dst}/"])
            return
        with tempfile.TemporaryFile() as buf:
            done = self.run(
                f"tar -c -C {shlex.quote(src)} .", stdout=buf, what="fetching the report"
            )
            if done.returncode:
                raise UserError(
                    f"fetching the report from {self.host} failed: "
                    f"{done.stderr.decode(errors='replace').strip()[-200:]}"
                )
            buf.seek(0)
            subprocess.run(["tar", "-x", "-C", str(dst)], stdin=buf, check=True)

    def _rsync(self, args: list[str]) -> None:
        rsh = shlex.join(["ssh", *self.options])
        done = subprocess.run(
            ["rsync", "-a", "--copy-links", "-e", rsh, *args], capture_output=True, text=True
        )
        if done.returncode:
            msg = done.stderr.strip()
            raise UserError(
                self.explain(msg)
                if done.returncode == 255 or "ssh" in msg
                else f"rsync to {self.host} failed: {msg.splitlines()[-1] if msg else done.returncode}"
            )

    def cleanup(self, folder: str) -> None:
        """Remove the remote temporary folder (best effort: the bench result matters more)."""
        if re.fullmatch(r"/\S*/edgeft-bench\.\w+", folder):
            with contextlib.suppress(UserError):
                self.run(f"rm -rf {shlex.quote(folder)}", timeout=60)


def _stage_split(bundle, staging: Path) -> dict[str, str]:
    """The bundle's validation images as ``label/NNNN_name`` symlinks; returns rel -> local path."""
    from edgeft.parity import bundle_valid_samples

    mapping = {}
    for i, (path, label) in enumerate(bundle_valid_samples(bundle)):
        rel = f"{label}/{i:05d}_{Path(path).name}"
        (staging / label).mkdir(parents=True, exist_ok=True)
        os.symlink(Path(path).resolve(), staging / rel)
        mapping[rel] = str(path)
    return mapping


def bench_argv(opts, bundle_dir: str, data_dir: str, out_dir: str) -> list[str]:
    """The remote ``edgeft bench`` arguments (after the edgeft command)."""
    argv = [
        "bench",
        bundle_dir,
        "--data",
        data_dir,
        "--device",
        opts.device,
        "--out",
        out_dir,
        "--batch-sizes",
        ",".join(map(str, opts.batch_sizes)),
        "--warmup",
        str(opts.warmup),
        "--rounds",
        str(opts.rounds),
        "--quiet",
    ]
    argv += ["--runs", str(opts.runs)] if opts.seconds is None else ["--seconds", str(opts.seconds)]
    if opts.threads:
        argv += ["--threads", str(opts.threads)]
    if opts.backends:
        argv += ["--backends", ",".join(opts.backends)]
    for t in opts.tolerances:
        argv += ["--tolerance", t]
    if not opts.e2e:
        argv.append("--no-e2e")
    return argv


def run_remote(opts, method: str | None = None) -> dict:
    """Run ``opts`` (a validated :class:`benchmarks.bench.BenchOptions`) on ``opts.remote``.

    Args:
        method: ``"rsync"`` or ``"tar"`` to force a copy method (default: rsync where both
            ends have it).

    Returns:
        The report, with paths mapped to this machine and a ``remote`` section.
    """
    from benchmarks.bench import raise_on_verdict, write_bench_reports
    from benchmarks.report import load_report
    from edgeft.bundle import Bundle
    from edgeft.console import console

    bundle = Bundle.load(opts.bundle)
    remote = Remote(opts.remote, opts.ssh_key, opts.remote_edgeft)
    out_dir = Path(opts.out) if opts.out else Path(f"bench-{bundle.path.name}-{opts.device}")
    t0 = time.perf_counter()
    folder, remote_rsync = remote.probe()
    method = method or ("rsync" if remote_rsync and shutil.which("rsync") else "tar")
    times = {}
    with tempfile.TemporaryDirectory(prefix="edgeft-remote-") as tmp:
        tmp = Path(tmp)
        try:
            console().print(
                f"copying {bundle.path} and the labelled images to {remote.host}:{folder} ({method})"
            )
            remote.push(bundle.path, f"{folder}/bundle", method)
            if opts.data is not None:
                data = Path(opts.data).expanduser()
                if not data.is_dir():
                    raise UserError(
                        f"--data {data} is not a folder: pass a folder of class folders"
                    )
                remote.push(data, f"{folder}/data", method)
                mapping = {"": str(data.resolve())}
            else:
                staging = tmp / "data"
                staging.mkdir()
                mapping = _stage_split(bundle, staging)
                remote.push(staging, f"{folder}/data", method)
            times["copy_s"] = round(time.perf_counter() - t0, 2)
            console().print(f"running edgeft bench on {remote.host}")
            argv = bench_argv(opts, f"{folder}/bundle", f"{folder}/data", f"{folder}/out")
            cmd = f"cd {shlex.quote(folder)} && {remote.remote_edgeft()} {shlex.join(argv)}"
            t1 = time.perf_counter()
            done = remote.run(cmd, what="edgeft bench")
            times["run_s"] = round(time.perf_counter() - t1, 2)
            err = done.stderr.decode(errors="replace")
            if done.returncode not in (0, 3):
                said = [ln for ln in err.splitlines() if ln.startswith("edgeft: error:")]
                why = (
                    said[-1][len("edgeft: error:") :].strip()
                    if said
                    else (err.strip().splitlines() or ["?"])[-1]
                )
                raise UserError(
                    f"edgeft bench on {remote.host} failed (exit {done.returncode}): {why}"
                )
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
        from benchmarks.report import print_report

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
