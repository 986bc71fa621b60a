"""Model updates without downtime: verify a new bundle beside the running one, swap between
frames, and roll back if its first frames look wrong.

A candidate comes from ``--bundle-dir DIR`` (its ``current`` symlink now names another
bundle; checked every ``--watch-interval`` seconds) or from SIGHUP (reload at once: the
``current`` target, or the bundle path itself). :class:`BundleWatcher` loads it in its own
thread while the old model keeps serving, and refuses it (staying on the old one) unless

1. the bundle loads: typed manifest, the artifact's sha256 against its record (runner
   construction checks it), input/output shapes against the manifest;
2. its golden-image self-test passes on this device (:meth:`Classifier.self_test`: the
   outputs recorded at export reproduced within tolerance; a bundle without golden
   images passes with ``checked: 0``, and the event says so);
3. its outputs on a blank frame are finite.

The camera loop then swaps it in between two frames (:meth:`ModelSlot.begin_frame`): a
frame is classified wholly by one model, prepared with that model's preprocessing. The
previous model stays loaded for ``--probation`` frames, the health check:

* any non-finite output: roll back at once (that frame is classified again by the
  previous model, so no frame is lost);
* confidence collapse: after the probation frames, the candidate's mean top-1
  probability is below half the previous model's over its last frames (same scene,
  moments apart), or within 2% of uniform (``1/C + 0.02 * (1 - 1/C)`` for ``C`` classes).

Passing, the previous model is released; failing, the candidate is. Every step is an
event: one stderr line, a ``"swap"`` object on the next frame's JSON line, ``/health``'s
``swap`` and the summary's ``swaps``. A refused or rolled-back bundle is not tried again
until its ``bundle.json`` changes or SIGHUP asks.
"""

from __future__ import annotations

import contextlib
import os
import threading
import time
from collections import deque
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from edgeft.errors import UserError

COLLAPSE_RATIO = 0.5
UNIFORM_MARGIN = 0.02


@dataclass
class Model:
    """A loaded, verified bundle and what identifies it."""

    clf: object
    path: str
    sha256: str
    gen: int
    self_test: dict
    key: tuple = ()

    @property
    def name(self) -> str:
        return Path(self.path).name

    def info(self) -> dict:
        return {
            "bundle": self.name,
            "bundle_path": self.path,
            "backend": self.clf.backend,
            "sha256": self.sha256,
            "generation": self.gen,
            "self_test": self.self_test,
        }


def load_model(path, opts, gen: int) -> Model:
    """Load and verify a bundle (checks 1-3 of the module notes).

    Raises:
        UserError: any check failed; the message says which and why.
    """
    from edgeft.runtime import Classifier

    clf = Classifier.load(
        path,
        backend=opts.backend,
        device=opts.device,
        threads=opts.threads,
        trust_modified=opts.trust_modified,
    )
    try:
        st = clf.self_test()
        self_test = {"passed": st.passed, "checked": st.checked, "detail": st.detail}
        if not st.passed:
            raise UserError(f"bundle {path} failed its self-test on this device: {st.detail}")
        h, w = clf.bundle.preprocessing.size
        for _ in range(2):  # warm-up (first runs allocate) and a finiteness check
            out = clf.probabilities(np.zeros((1, 3, h, w), dtype=np.float32))
        if not np.isfinite(out).all():
            raise UserError(f"bundle {path}: the model's outputs on a blank frame are not finite")
    except BaseException:
        clf.close()
        raise
    record = getattr(clf.runner, "record", None)
    sha = getattr(record, "sha256", None) or clf.bundle.manifest.model.weights_sha256 or "-"
    resolved = str(Path(path).resolve())
    return Model(clf, resolved, sha, gen, self_test, bundle_key(resolved))


class ModelSlot:
    """The model the loop runs, the candidate waiting for it, and the probation check.

    The watcher thread calls :meth:`offer` / :meth:`refuse`; the loop thread calls
    :meth:`begin_frame` and :meth:`after_frame`. Only the loop changes :attr:`active`.
    """

    def __init__(self, model: Model, probation: int, log):
        self.active, self.probation_frames, self.log = model, probation, log
        self.previous: Model | None = None
        self._pending: Model | None = None
        self._lock = threading.Lock()
        self._events: deque = deque()
        self.last_event: dict | None = None
        self.counts = {"swapped": 0, "confirmed": 0, "rolled_back": 0, "refused": 0}
        self.history: deque = deque(maxlen=10)
        self.rejected: dict = {}
        self._trial: list[float] | None = None
        self._recent_top1: deque = deque(maxlen=max(1, probation))
        self.next_gen = model.gen + 1

    # -- watcher thread ----------------------------------------------------------------
    @property
    def busy(self) -> bool:
        """A candidate is waiting or on probation: the watcher holds off."""
        return self._pending is not None or self.previous is not None

    def offer(self, model: Model) -> None:
        with self._lock:
            self._pending = model

    def refuse(self, path: str, key, reason: str, sha: str | None = None) -> None:
        self.rejected[key] = reason
        self._event("refused", reason, to=sha, bundle=Path(path).name)

    # -- loop thread -------------------------------------------------------------------
    def begin_frame(self) -> Model:
        """Swap in a waiting candidate (between frames); returns the model for this frame."""
        if self._pending is not None:
            with self._lock:  # (the watcher reads `busy`: never both None mid-swap)
                cand, self._pending = self._pending, None
                self.previous, self.active = self.active, cand
            self._trial = [] if self.probation_frames else None
            self._event("swapped", None, frm=self.previous.sha256, to=cand.sha256)
            if self._trial is None:
                self._release_previous()
        return self.active

    def after_frame(self, probs: np.ndarray) -> Model | None:
        """Health-check a frame's output; returns the previous model when it rolled back
        (the caller classifies the frame again with it), else None."""
        finite = bool(np.isfinite(probs).all())
        if self._trial is None:
            if finite:
                self._recent_top1.append(float(probs.max()))
            return None
        if not finite:
            return self._rollback("non-finite outputs on its first frames")
        self._trial.append(float(probs.max()))
        if len(self._trial) < self.probation_frames:
            return None
        why = self._collapse(np.mean(self._trial), len(probs))
        if why:
            return self._rollback(why)
        self._recent_top1.clear()
        self._recent_top1.extend(self._trial)
        self._trial = None
        self._event("confirmed", None, to=self.active.sha256)
        self._release_previous()
        return None

    def _collapse(self, mean_top1: float, n_classes: int) -> str | None:
        floor = 1 / n_classes + UNIFORM_MARGIN * (1 - 1 / n_classes)
        ref = float(np.mean(self._recent_top1)) if self._recent_top1 else None
        if mean_top1 < floor:
            return (
                f"confidence collapse: mean top-1 {mean_top1:.3f} is near uniform (< {floor:.3f})"
            )
        if ref is not None and mean_top1 < COLLAPSE_RATIO * ref:
            return (
                f"confidence collapse: mean top-1 {mean_top1:.3f} over {len(self._trial)} "
                f"frames vs {ref:.3f} before the swap"
            )
        return None

    def _rollback(self, reason: str) -> Model:
        bad, self.active, self.previous = self.active, self.previous, None
        self._trial = None
        self.rejected[bad.key] = reason
        self._event("rolled_back", reason, frm=bad.sha256, to=self.active.sha256, bundle=bad.name)
        bad.clf.close()
        release_memory()
        return self.active

    def _release_previous(self) -> None:
        if self.previous is not None:
            self.previous.clf.close()
            self.previous = None
            release_memory()

    def _event(self, result: str, reason, frm=None, to=None, bundle=None) -> None:
        ev = {
            "result": result,
            "bundle": bundle or self.active.name,
            "from": _short(frm),
            "to": _short(to),
            "reason": reason,
            "at": round(time.time(), 3),
        }
        with self._lock:  # the watcher (refused) and the loop (the rest) both report
            self.counts[result] += 1
            self.history.append(ev)
            self.last_event = ev
            self._events.append(ev)
        why = f": {reason}" if reason else ""
        self.log(f"model update {result.replace('_', ' ')}: {ev['bundle']} {ev['to'] or ''}{why}")

    def take_event(self) -> dict | None:
        """The oldest event not yet written to a JSON line."""
        return self._events.popleft() if self._events else None

    def health(self) -> dict:
        out = self.active.info()
        out["swap"] = self.last_event
        out["probation"] = (
            None
            if self._trial is None
            else {"frames": len(self._trial), "of": self.probation_frames}
        )
        return out

    def summary(self) -> dict:
        return {**self.counts, "events": list(self.history)}

    def close(self) -> None:
        with self._lock:
            pending, self._pending = self._pending, None
        for m in (pending, self.previous, self.active):
            if m is not None:
                m.clf.close()


class BundleWatcher:
    """Loads and verifies candidates in a daemon thread (see the module notes).

    Args:
        slot: the :class:`ModelSlot` to offer them to.
        opts: the camera options (``bundle``/``bundle_dir``, backend, device, threads,
            ``watch_interval``).
    """

    def __init__(self, slot: ModelSlot, opts):
        self.slot, self.opts = slot, opts
        self.target = Path(opts.bundle_dir) / "current" if opts.bundle_dir else Path(opts.bundle)
        self.kick = threading.Event()  # SIGHUP: look now, and reload even the same bundle
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="edgeft-watch", daemon=True)

    def start(self) -> BundleWatcher:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        self.kick.set()
        if self._thread.is_alive():
            self._thread.join(30)  # a candidate being loaded finishes first

    def _run(self) -> None:
        interval = self.opts.watch_interval if self.opts.bundle_dir else None
        while not self._stop.is_set():
            self.kick.wait(interval)
            if self._stop.is_set():
                return
            forced = self.kick.is_set()
            self.kick.clear()
            if self.slot.busy:
                if forced:
                    self.kick.set()  # keep the request until the trial ends
                    self._stop.wait(0.2)
                continue
            path = str(self.target.resolve())
            key = bundle_key(path)
            if forced and key == self.slot.active.key:
                self.slot.log(f"model update: already serving {path}, unchanged")
            elif forced or (path != self.slot.active.path and key not in self.slot.rejected):
                self._try(path, key)

    def _try(self, path: str, key) -> None:
        self.slot.log(f"model update: verifying {path} beside the running model")
        try:
            model = load_model(path, self.opts, self.slot.next_gen)
        except UserError as exc:
            self.slot.refuse(path, key, f"{exc}")
            return
        except Exception as exc:  # a broken candidate must never stop the service
            self.slot.refuse(path, key, f"{type(exc).__name__}: {exc}")
            return
        self.slot.next_gen += 1
        self.slot.offer(model)


def release_memory() -> None:
    """Hand the freed model's memory back to the OS (glibc keeps freed heap pages by
    default, so without this each swap would raise the resident size a little more)."""
    import ctypes
    import ctypes.util
    import gc

    gc.collect()  # the model's objects in reference cycles go now, not at some later frame
    with contextlib.suppress(OSError, AttributeError):  # not glibc (musl, macOS): nothing to do
        ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6").malloc_trim(0)


def bundle_key(path: str):
    """What identifies a bundle's state: its folder and its manifest's mtime."""
    try:
        return (path, os.stat(Path(path) / "bundle.json").st_mtime_ns)
    except OSError:
        return (path, None)


def _short(sha: str | None) -> str | None:
    return sha[:12] if sha else None
