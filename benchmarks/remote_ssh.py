"""SSH command lines for ``edgeft bench --remote``: one destination, key authentication
only, and error lines a person can act on (see :mod:`benchmarks.remote`)."""

from __future__ import annotations

import contextlib
import os
import re
import shlex
import subprocess
import tempfile
from pathlib import Path

from edgeft.errors import UserError

_MARK = "__edgeft_probe__"


def parse_target(target: str) -> tuple[str, str, int | None]:
    """``user@host[:port]`` -> ``(destination, host, port)`` (``[::1]`` style IPv6 allowed)."""
    m = re.fullmatch(
        r"(?:(?P<user>[^@\s:]+)@)?(?P<host>\[[^\]]+\]|[^@\s:\[\]]+)(?::(?P<port>\d+))?",
        target.strip(),
    )
    if not m or target.strip().startswith("-"):
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
        # "--" ends ssh's options: nothing in the destination can be read as one
        # (e.g. --remote=-oProxyCommand=...).
        return ["ssh", *self.options, "--", self.dest, command]

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
