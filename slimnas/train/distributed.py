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


def init_distributed(device: torch.device) -> DistInfo:
    """Join the process group ``torchrun`` describes in the environment (no-op when WORLD_SIZE is 1 or unset)."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world <= 1:
        return DistInfo()
    if not dist.is_initialized():
        backend = "nccl" if device.type == "cuda" else "gloo"
        dist.init_process_group(backend=backend)
    return DistInfo(dist.get_rank(), dist.get_world_size(), int(os.environ.get("LOCAL_RANK", "0")))


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
