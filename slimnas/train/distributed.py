"""DistributedDataParallel under ``torchrun``: gloo on CPU, nccl on GPU. A single process needs none of it."""
from __future__ import annotations

import hashlib
import json
import os
from dataclasses import dataclass
from typing import Mapping

import torch
import torch.distributed as dist


@dataclass(frozen=True)
class DistInfo:
    rank: int = 0
    world_size: int = 1
    local_rank: int = 0

    @property
    def enabled(self) -> bool:
        return self.world_size > 1

    @property
    def is_main(self) -> bool:
        return self.rank == 0


_OWNED = False  # the process group was created here (and so is destroyed by :func:`close_distributed`)


def init_distributed(device: torch.device) -> DistInfo:
    """Join the process group ``torchrun`` describes in the environment (no-op when WORLD_SIZE is 1 or unset).

    A group created here belongs to slimnas: :func:`close_distributed` destroys it once the work is done (the
    command line does so after a command succeeds). One a caller created stays the caller's to destroy."""
    global _OWNED
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world <= 1:
        return DistInfo()
    if not dist.is_initialized():
        backend = "nccl" if device.type == "cuda" else "gloo"
        dist.init_process_group(backend=backend)
        _OWNED = True
    return DistInfo(dist.get_rank(), dist.get_world_size(), int(os.environ.get("LOCAL_RANK", "0")))


def close_distributed() -> None:
    """Destroy the process group :func:`init_distributed` created, after every process got here.

    Call it on success only: a process that leaves while the group lives may abort at interpreter exit (gloo's
    worker threads outlive Python: "terminate called without an active exception", SIGABRT, seen under torchrun
    in CI), and destroying it while a failed peer never reaches the barrier would wait for the group's timeout."""
    global _OWNED
    if _OWNED and dist.is_available() and dist.is_initialized():
        dist.barrier()
        dist.destroy_process_group()
    _OWNED = False


def mean_across(t: torch.Tensor, info: DistInfo) -> torch.Tensor:
    """The mean of ``t`` over all processes (``t`` itself when running alone)."""
    if not info.enabled:
        return t
    t = t.clone()
    dist.all_reduce(t, op=dist.ReduceOp.SUM)
    return t / info.world_size


def barrier(info: DistInfo) -> None:
    if info.enabled:
        dist.barrier()


def state_digest(tensors: Mapping[str, torch.Tensor], extra: object = None) -> str:
    """SHA-1 of named tensors (names, dtypes, shapes, bytes) and of plain data ``extra`` (as sorted JSON).

    Replicas that agree exactly have equal digests; :meth:`Trainer.fit` compares them across processes.
    """
    h = hashlib.sha1()
    for name in sorted(tensors):
        t = tensors[name].detach().cpu().contiguous()
        h.update(f"{name}:{t.dtype}:{tuple(t.shape)}".encode())
        h.update(t.reshape(-1).view(torch.uint8).numpy().tobytes() if t.numel() else b"")
    h.update(json.dumps(extra, sort_keys=True, default=str).encode())
    return h.hexdigest()


def gather_strings(text: str, info: DistInfo) -> list[str]:
    """``text`` of every process, in rank order (``[text]`` when alone)."""
    if not info.enabled:
        return [text]
    out: list = [None] * info.world_size
    dist.all_gather_object(out, text)
    return [str(v) for v in out]
