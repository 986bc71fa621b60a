"""One fine-tune across N processes: fastai's distributed path on Hugging Face Accelerate.

``torchrun --nproc_per_node N -m edgeft finetune ...`` (or ``accelerate launch --multi_gpu
--num_processes N -m edgeft finetune ...``) starts N copies of edgeft. Each reads its rank
from the launcher's environment (:func:`world`), joins the process group through
Accelerate's ``PartialState`` (:func:`session`), and trains inside fastai's
``learn.distrib_ctx()`` (:func:`distrib_ctx`): fastai's ``DistributedTrainer`` wraps the
model in DDP through an ``Accelerator`` and each DataLoader in a ``DistributedDL`` that gives
every process its share of each epoch. Rank 0 alone evaluates and writes the bundle.

Pitfalls handled here (fastai 2.8, Accelerate 1.x, torch 2.x):

- Without CUDA, Accelerate joins no process group unless told ``cpu=True``: each rank then
  silently trains its own copy. The CPU case passes ``cpu=True`` (backend gloo).
- ``DistributedDL._broadcast`` moves the shuffled indices to CUDA ("nccl only works with
  cuda tensors"), which fails with gloo: patched (fastcore ``patch_to``, fastai's own idiom)
  to keep them on the CPU unless the backend is nccl.
- fastai's default ``sync_bn=True`` converts BatchNorm to SyncBatchNorm, which refuses CPU
  tensors: SyncBatchNorm with nccl only.
- ``accelerate launch --cpu --num_processes N`` starts one process unless mpirun is
  configured (huggingface/accelerate#2741): refused with one line naming the commands
  that work, rather than silently training in one process.
- A rank that dies: the survivors' next collective fails (gloo: connection closed) or the
  launcher sends SIGTERM; both end in one line, and nothing is written.
"""

from __future__ import annotations

import contextlib
import os
import re
import signal
from dataclasses import dataclass
from datetime import timedelta

from edgeft.errors import UserError

_SIZE = ("WORLD_SIZE", "PMI_SIZE", "OMPI_COMM_WORLD_SIZE", "MV2_COMM_WORLD_SIZE")
_RANK = ("RANK", "PMI_RANK", "OMPI_COMM_WORLD_RANK", "MV2_COMM_WORLD_RANK")
_LOCAL = (
    "LOCAL_RANK",
    "MPI_LOCALRANKID",
    "OMPI_COMM_WORLD_LOCAL_RANK",
    "MV2_COMM_WORLD_LOCAL_RANK",
)


@dataclass(frozen=True)
class World:
    """This process's place in a (possibly one-process) run."""

    size: int = 1
    rank: int = 0
    local_rank: int = 0

    @property
    def distributed(self) -> bool:
        return self.size > 1

    @property
    def main(self) -> bool:
        """Rank 0: the one process that prints, evaluates and writes."""
        return self.rank == 0


def _env_int(names: tuple[str, ...], default: int) -> int:
    for name in names:
        value = os.environ.get(name, "").strip()
        if value:
            try:
                return int(value)
            except ValueError:
                raise UserError(f"${name} must be an integer, not {value!r}") from None
    return default


def world() -> World:
    """The launcher's world from the environment (torchrun, accelerate launch, mpirun).

    Raises:
        UserError: ``accelerate launch --cpu`` asked for several processes but started one.
    """
    size = _env_int(_SIZE, 1)
    accel_cpu = os.environ.get("ACCELERATE_USE_CPU", "").lower() in ("true", "1", "yes")
    if size <= 1 and accel_cpu and os.environ.get("MASTER_ADDR"):
        # accelerate's simple launcher sets MASTER_ADDR only for --num_processes > 1, yet
        # starts a single process on CPUs unless it runs mpirun (accelerate#2741).
        raise UserError(
            "accelerate launch --cpu started one process, not several (Accelerate runs CPU "
            "processes only through mpirun): use `accelerate launch --multi_gpu "
            "--num_processes N` (gloo on a machine without CUDA) or `torchrun --nproc_per_node N`"
        )
    return World(size, _env_int(_RANK, 0), _env_int(_LOCAL, 0))


def _patch_fastai_broadcast() -> None:
    import torch
    from fastai.distributed import DistributedDL
    from fastcore.basics import patch_to

    @patch_to(DistributedDL)
    def _broadcast(self, t, rank):
        "Broadcast ``t`` from ``rank``; on CUDA for nccl only (fastai 2.8 always uses CUDA)."
        t = torch.LongTensor(t)
        if torch.distributed.get_backend() == "nccl":
            t = t.cuda()
        torch.distributed.broadcast(t, rank)
        return t.cpu().tolist()


class _Terminated(BaseException):
    """SIGTERM from the launcher. A BaseException, so fastai's callback wrapper (which
    rewrites every ``Exception``) and ``except Exception`` blocks let it through."""


def _on_sigterm(signum, frame):
    raise _Terminated()


def _lost(w: World, what: str) -> UserError:
    return UserError(
        f"process {w.rank} of {w.size}: {what}; the distributed run failed and wrote nothing"
    )


def _is_peer_failure(exc: BaseException) -> bool:
    import torch.distributed as dist

    if isinstance(exc, dist.DistError):
        return True
    text = str(exc).lower()
    return isinstance(exc, RuntimeError) and any(
        s in text for s in ("gloo", "nccl", "connection closed", "connection reset", "timed out")
    )


def _reason(exc: BaseException) -> str:
    """The gist of a c10d/gloo error: first sentence, without its source-location prefix."""
    # fastai prefixes errors raised in callbacks with "Exception occured in `X` ...:\n\t"
    lines = [ln.strip() for ln in str(exc).splitlines() if ln.strip()]
    lines = [ln for ln in lines if not ln.startswith("Exception occured in")]
    text = (lines or [type(exc).__name__])[0]
    text = re.sub(r"^(\[[^\]]*\]\s*)+", "", text)
    return text.split(". ")[0][:120]


@contextlib.contextmanager
def one_line_failures(w: World):
    """Around a distributed run (a no-op alone): a lost peer (gloo/nccl error) or the
    launcher's SIGTERM (sent to the survivors when a process dies) becomes one
    :class:`UserError` line instead of a traceback or a silent death."""
    if not w.distributed:
        yield
        return
    old = signal.signal(signal.SIGTERM, _on_sigterm)
    try:
        yield
    except _Terminated:
        raise _lost(w, "stopped by the launcher (another process failed or was killed)") from None
    except (RuntimeError, TimeoutError) as exc:
        if not _is_peer_failure(exc):
            raise
        raise _lost(w, f"lost contact with the other processes ({_reason(exc)})") from None
    finally:
        signal.signal(signal.SIGTERM, old)


@contextlib.contextmanager
def session(w: World, timeout_s: float):
    """Join the process group for the block (a no-op for one process); yields the backend
    (``"nccl"``/``"gloo"``, ``None`` alone)."""
    if not w.distributed:
        yield None
        return
    import torch

    try:
        from accelerate import PartialState
    except ImportError:
        raise UserError(
            "training under a launcher uses fastai's distributed path on Hugging Face "
            "Accelerate: pip install accelerate"
        ) from None
    try:
        PartialState(cpu=not torch.cuda.is_available(), timeout=timedelta(seconds=timeout_s))
        _patch_fastai_broadcast()
        yield torch.distributed.get_backend()
    finally:
        if torch.distributed.is_initialized():
            torch.distributed.destroy_process_group()


def same_everywhere(value, what: str) -> None:
    """Refuse a run whose processes disagree on ``value`` (e.g. the data fingerprint).

    Raises:
        UserError: the processes see different ``what``.
    """
    import torch.distributed as dist

    if not dist.is_initialized():
        return
    seen = [None] * dist.get_world_size()
    dist.all_gather_object(seen, value)
    if len(set(map(str, seen))) > 1:
        raise UserError(f"the processes of this run see different {what}: give every node the same")


def all_agree(ok: bool) -> bool:
    """True when ``ok`` holds on every process (one all-reduce; ``ok`` alone otherwise)."""
    import torch
    import torch.distributed as dist

    if not dist.is_initialized():
        return ok
    t = torch.tensor([1 if ok else 0], dtype=torch.int32)
    if dist.get_backend() == "nccl":
        t = t.cuda()
    dist.all_reduce(t, op=dist.ReduceOp.MIN)
    return bool(t.item())


def distrib_ctx(learn, backend: str | None):
    """fastai's ``learn.distrib_ctx()`` for this backend (a null context for one process)."""
    if backend is None:
        return contextlib.nullcontext(learn)
    import fastai.distributed  # noqa: F401  (patches Learner.distrib_ctx)

    return learn.distrib_ctx(sync_bn=backend == "nccl", cpu=backend != "nccl")
