"""Training checkpoints: tensors in safetensors, everything else in JSON, never pickle.

A checkpoint directory holds ``state.json`` and the tensor files it names. A write is atomic:
the tensor files of a new checkpoint get new names, each is written to a temporary file,
flushed to disk and renamed into place, and only then is ``state.json`` replaced (again
through a temporary file and a rename). A kill at any moment leaves a ``state.json`` whose
files all exist, so the previous checkpoint stays usable; files no ``state.json`` names are
removed by the next successful write.
"""

from __future__ import annotations

import json
import os
import random
import uuid
from pathlib import Path
from typing import Any

import torch

from nerx.errors import ConfigError
from nerx.models.base import dedupe_shared

STATE_NAME = "state.json"


# ---------------------------------------------------------------------- atomic files
def _fsync_dir(path: Path) -> None:
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:  # some filesystems do not open directories
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def _replace_durably(tmp: Path, final: Path) -> None:
    with open(tmp, "rb+") as handle:
        os.fsync(handle.fileno())
    os.replace(tmp, final)


def write_json_atomic(path: Path, data: Any) -> None:
    """Write ``data`` as JSON to ``path`` so a reader sees the old file or the new, whole."""
    tmp = path.with_name(f".{path.name}.{uuid.uuid4().hex[:8]}.tmp")
    tmp.write_text(json.dumps(data), encoding="utf-8")
    _replace_durably(tmp, path)
    _fsync_dir(path.parent)


def _write_tensors(directory: Path, name: str, tensors: dict[str, torch.Tensor]) -> str:
    from safetensors.torch import save_file

    final = f"{name}-{uuid.uuid4().hex[:12]}.safetensors"
    tmp = directory / f".{final}.tmp"
    save_file(dedupe_shared(tensors), str(tmp))
    _replace_durably(tmp, directory / final)
    return final


# ---------------------------------------------------------------------- optimizer state
def optimizer_parts(optimizer: torch.optim.Optimizer) -> tuple[dict, dict]:
    """(tensors, JSON) of an optimizer's state dict."""
    state = optimizer.state_dict()
    tensors, plain = {}, {}
    for param_id, values in state["state"].items():
        for key, value in values.items():
            if torch.is_tensor(value):
                tensors[f"{param_id}/{key}"] = value.detach().cpu().contiguous()
            else:
                plain[f"{param_id}/{key}"] = value
    return tensors, {"groups": state["param_groups"], "plain": plain}


def load_optimizer(optimizer, tensors: dict[str, torch.Tensor], meta: dict) -> None:
    state: dict[int, dict] = {}
    for key, value in list(tensors.items()) + list(meta["plain"].items()):
        param_id, name = key.split("/", 1)
        state.setdefault(int(param_id), {})[name] = value
    optimizer.load_state_dict({"state": state, "param_groups": meta["groups"]})


def scheduler_state(scheduler) -> dict:
    return {k: v for k, v in scheduler.state_dict().items() if _is_plain(v)}


def _is_plain(value) -> bool:
    try:
        json.dumps(value)
    except TypeError:
        return False
    return True


# ---------------------------------------------------------------------- random states
def rng_state() -> tuple[dict[str, torch.Tensor], dict]:
    """Every random state training draws on: Python's, torch's CPU generator and each CUDA
    device's. (tensors, JSON)."""
    tensors = {"torch": torch.get_rng_state()}
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        for index, state in enumerate(torch.cuda.get_rng_state_all()):
            tensors[f"cuda/{index}"] = state
    version, internal, gauss = random.getstate()
    return tensors, {"python": [version, list(internal), gauss]}


def set_rng_state(tensors: dict[str, torch.Tensor], meta: dict) -> None:
    torch.set_rng_state(tensors["torch"])
    cuda = sorted((k for k in tensors if k.startswith("cuda/")), key=lambda k: int(k[5:]))
    if cuda and torch.cuda.is_available():
        states = [tensors[k] for k in cuda][: torch.cuda.device_count()]
        torch.cuda.set_rng_state_all(states)
    version, internal, gauss = meta["python"]
    random.setstate((version, tuple(internal), gauss))


# ---------------------------------------------------------------------- save / load
def save_checkpoint(
    path: Path,
    *,
    model: torch.nn.Module,
    optimizer: torch.optim.Optimizer,
    scheduler,
    state: dict,
    rng_states: list[tuple[dict[str, torch.Tensor], dict]],
) -> None:
    """Write a checkpoint: model and optimizer tensors, scheduler, the loop's ``state``
    (data position, best score, history) and one random state per rank."""
    path.mkdir(parents=True, exist_ok=True)
    weights = {k: v.detach().cpu().contiguous() for k, v in model.state_dict().items()}
    opt_tensors, opt_meta = optimizer_parts(optimizer)
    files = {"model": _write_tensors(path, "model", weights)}
    if opt_tensors:
        files["optimizer"] = _write_tensors(path, "optimizer", opt_tensors)
    rng_meta = []
    for rank, (tensors, meta) in enumerate(rng_states):
        files[f"rng-{rank}"] = _write_tensors(path, f"rng-{rank}", tensors)
        rng_meta.append(meta)
    meta = {
        "state": state,
        "files": files,
        "optimizer": opt_meta,
        "scheduler": scheduler_state(scheduler),
        "rng": rng_meta,
    }
    write_json_atomic(path / STATE_NAME, meta)
    kept = set(files.values()) | {STATE_NAME}
    for stale in path.iterdir():
        if stale.name not in kept and stale.is_file():
            stale.unlink(missing_ok=True)


def read_checkpoint(path: Path) -> dict:
    """The JSON part of the checkpoint in ``path`` (its files are checked to exist)."""
    state_file = path / STATE_NAME
    if not state_file.is_file():
        raise ConfigError(
            f"no checkpoint to resume from in {path}", hint="run without --resume to start anew"
        )
    try:
        meta = json.loads(state_file.read_text(encoding="utf-8"))
    except json.JSONDecodeError as exc:
        raise ConfigError(f"{state_file} is not a valid checkpoint: {exc}") from None
    if "files" not in meta:
        meta = _from_epoch_only_format(path, meta)
    missing = [name for name in meta["files"].values() if not (path / name).is_file()]
    if missing:
        raise ConfigError(
            f"checkpoint {path} lacks {', '.join(missing)}",
            hint="copy the whole checkpoint directory, or run without --resume",
        )
    return meta


def _from_epoch_only_format(path: Path, meta: dict) -> dict:
    """A checkpoint of the earlier layout (fixed file names, epoch ends only, no random
    states) in this one's terms, so such a run still resumes at its next epoch."""
    files = {"model": "model.safetensors"}
    if (path / "optimizer.safetensors").is_file():
        files["optimizer"] = "optimizer.safetensors"
    return {
        "state": meta["state"],
        "files": files,
        "optimizer": {"groups": meta["optimizer_groups"], "plain": meta["optimizer_plain"]},
        "scheduler": meta["scheduler"],
        "rng": [],
    }


def load_tensors(path: Path, meta: dict, name: str) -> dict[str, torch.Tensor] | None:
    from safetensors.torch import load_file

    file = meta["files"].get(name)
    return load_file(str(path / file)) if file else None


def load_checkpoint(path: Path, *, model, optimizer, scheduler, rank: int = 0) -> dict:
    """Restore model, optimizer, scheduler and this rank's random state; returns the loop's
    state (data position, best score, history)."""
    meta = read_checkpoint(path)
    model.load_state_dict(load_tensors(path, meta, "model"))
    load_optimizer(optimizer, load_tensors(path, meta, "optimizer") or {}, meta["optimizer"])
    scheduler.load_state_dict({**scheduler.state_dict(), **meta["scheduler"]})
    rng = load_tensors(path, meta, f"rng-{rank}")
    if rng is not None and rank < len(meta.get("rng", [])):
        set_rng_state(rng, meta["rng"][rank])
    return meta["state"]


def checkpoint_weights(path: Path) -> dict[str, torch.Tensor]:
    """The model weights of the checkpoint in ``path`` (the last step saved)."""
    meta = read_checkpoint(path)
    return load_tensors(path, meta, "model")
