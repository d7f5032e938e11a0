"""Where and how tensors run: device resolution, precision, moving batches, torchrun ranks.

Training, extraction and the spaCy component all take these from here, so none of them
imports another's pipeline for a helper.
"""

from __future__ import annotations

import contextlib
import dataclasses
import os
from dataclasses import dataclass
from typing import Any

import torch

from nerx.errors import ConfigError

PRECISIONS = ("auto", "bf16", "fp32")


def resolve_device(device: str = "auto") -> torch.device:
    """``auto`` is the first GPU when there is one (``cuda:LOCAL_RANK`` under torchrun),
    else the CPU."""
    if device == "auto":
        if torch.cuda.is_available():
            return torch.device("cuda", ranks().local_rank % torch.cuda.device_count())
        return torch.device("cpu")
    try:
        resolved = torch.device(device)
    except RuntimeError:
        raise ConfigError(
            f"unknown device {device!r}", hint="use auto, cpu, cuda or cuda:N"
        ) from None
    if resolved.type == "cuda" and not torch.cuda.is_available():
        raise ConfigError(
            f"device {device!r} asked for, but no GPU is available", hint="use --device cpu"
        )
    if resolved.type == "cuda" and resolved.index is None and ranks().distributed:
        # Under torchrun, plain "cuda" is this process's GPU, not every process on GPU 0.
        return torch.device("cuda", ranks().local_rank % torch.cuda.device_count())
    return resolved


def resolve_precision(precision: str, device: torch.device) -> str:
    """``auto`` is bf16 on a GPU and fp32 on a CPU (bf16 matmuls are slow on most CPUs)."""
    if precision not in PRECISIONS:
        raise ConfigError(
            f"unknown precision {precision!r}", hint=f"use one of: {', '.join(PRECISIONS)}"
        )
    if precision == "auto":
        return "bf16" if device.type == "cuda" else "fp32"
    return precision


def autocast(device: torch.device, precision: str = "auto"):
    """bf16 autocast when the resolved precision is bf16 (on any device); else a no-op."""
    if resolve_precision(precision, device) != "bf16":
        return contextlib.nullcontext()
    return torch.autocast(device.type, dtype=torch.bfloat16)


def move_batch(batch: Any, device: torch.device) -> Any:
    """A collated batch with its tensors on ``device``: a model's ``Batch`` (a dataclass, its
    tensor fields moved) or a dict of tensors."""
    if dataclasses.is_dataclass(batch) and not isinstance(batch, type):
        moved = {
            f.name: _moved(getattr(batch, f.name), device)
            for f in dataclasses.fields(batch)
            if torch.is_tensor(getattr(batch, f.name))
        }
        return dataclasses.replace(batch, **moved)
    return {k: _moved(v, device) for k, v in batch.items()}


def _moved(value: Any, device: torch.device) -> Any:
    return value.to(device, non_blocking=True) if torch.is_tensor(value) else value


@dataclass(frozen=True)
class Ranks:
    """This process's place under torchrun; one process of one when not launched by it."""

    rank: int = 0
    world_size: int = 1
    local_rank: int = 0

    @property
    def distributed(self) -> bool:
        return self.world_size > 1

    @property
    def is_main(self) -> bool:
        return self.rank == 0


def ranks() -> Ranks:
    """Read torchrun's environment (``RANK``, ``WORLD_SIZE``, ``LOCAL_RANK``)."""
    try:
        return Ranks(
            rank=int(os.environ.get("RANK", 0)),
            world_size=int(os.environ.get("WORLD_SIZE", 1)),
            local_rank=int(os.environ.get("LOCAL_RANK", 0)),
        )
    except ValueError:
        raise ConfigError(
            "RANK, WORLD_SIZE and LOCAL_RANK must be integers",
            hint="launch with torchrun, which sets them",
        ) from None


# ---------------------------------------------------------------------- torchrun / DDP
def start_distributed(device: torch.device) -> bool:
    """Join torchrun's process group (NCCL on GPUs, gloo on CPU) when launched by it and not
    joined yet. Returns whether this call started it (so the caller ends it)."""
    import datetime

    import torch.distributed as dist

    if not ranks().distributed or dist.is_initialized():
        return False
    if not dist.is_available():
        raise ConfigError("this torch build has no torch.distributed", hint="run one process")
    if device.type == "cuda":
        torch.cuda.set_device(device)
    backend = "nccl" if device.type == "cuda" else "gloo"
    # Rank 0 scores dev and saves alone while the others wait: allow it time.
    dist.init_process_group(backend, timeout=datetime.timedelta(hours=2))
    return True


def stop_distributed() -> None:
    import torch.distributed as dist

    if dist.is_initialized():
        dist.destroy_process_group()


def _joined() -> bool:
    import torch.distributed as dist

    return dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1


def barrier() -> None:
    """Wait for every rank (a no-op in one process)."""
    import torch.distributed as dist

    if _joined():
        if dist.get_backend() == "nccl":
            dist.barrier(device_ids=[torch.cuda.current_device()])
        else:
            dist.barrier()


def all_reduce_sum(tensor: torch.Tensor) -> torch.Tensor:
    """Sum ``tensor`` over the ranks, in place (unchanged in one process)."""
    import torch.distributed as dist

    if _joined():
        dist.all_reduce(tensor, op=dist.ReduceOp.SUM)
    return tensor


def broadcast_object(value, source: int = 0):
    """Rank ``source``'s ``value`` on every rank (in memory only; nothing is written)."""
    import torch.distributed as dist

    if not _joined():
        return value
    box = [value]
    dist.broadcast_object_list(box, src=source)
    return box[0]


def gather_objects(value) -> list:
    """Every rank's ``value``, in rank order, on every rank."""
    import torch.distributed as dist

    if not _joined():
        return [value]
    gathered = [None] * dist.get_world_size()
    dist.all_gather_object(gathered, value)
    return gathered


@contextlib.contextmanager
def distributed(device: torch.device):
    """Within the block, this process is in torchrun's process group (joined here unless the
    caller joined it already, and left on the way out)."""
    started = start_distributed(device)
    try:
        yield
    finally:
        if started:
            stop_distributed()


class Terminated(KeyboardInterrupt):
    """SIGTERM, raised where the program is, so it unwinds like Ctrl-C."""

    signal_number = 15
    exit_code = 143


@contextlib.contextmanager
def sigterm_as_interrupt():
    """Within the block, SIGTERM raises :class:`Terminated` (the main thread only)."""
    import signal
    import threading

    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def terminate(signum, frame):
        raise Terminated()

    before = signal.signal(signal.SIGTERM, terminate)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, before)
