"""Several processes training one model: torchrun's environment, DistributedDataParallel, the launcher.

`speech2lip train --gpus N` starts N copies of itself under torchrun (one per GPU;
on a machine without CUDA they use the CPU and the gloo backend). Running the same
command under `torchrun --nproc-per-node N -m speech2lip.core.cli train ...` does
the same. The budget keeps its meaning whatever N is: a step is one optimiser update
over a global batch of train.batch frames, of which each of the N processes draws
train.batch // N (at least 1); --minutes is rank 0's clock. Rank 0 alone evaluates and
writes checkpoints, previews and history; the weights it saves carry no `module.`
prefix, so a run resumes on any number of processes. When one worker dies, torchrun
stops the others, and the last checkpoint is the one rank 0 wrote before.
"""
from __future__ import annotations

import atexit
import hashlib
import os
import subprocess
import sys
from dataclasses import dataclass, replace
from datetime import timedelta
from typing import Callable, Iterable

import torch
import torch.distributed as dist
import torch.nn as nn

from ..config import EngineConfig
from ..device import pick_device
from ..errors import UserError

# Rank 0 may evaluate, preview or train a sync expert while the others wait at the next
# collective: the default 10-minute NCCL timeout would kill a healthy run.
TIMEOUT = timedelta(hours=2)


@dataclass(frozen=True)
class Ranks:
    rank: int = 0
    world: int = 1
    local: int = 0

    @property
    def active(self) -> bool:
        return self.world > 1

    @property
    def main(self) -> bool:
        return self.rank == 0


def from_env() -> Ranks:
    """The process's place in a torchrun launch (a single process when not launched)."""
    env = os.environ
    return Ranks(int(env.get("RANK", 0)), int(env.get("WORLD_SIZE", 1)), int(env.get("LOCAL_RANK", 0)))


def setup(device: str) -> tuple[Ranks, torch.device]:
    """Join the process group when launched by torchrun; returns (ranks, this process's device)."""
    ranks = from_env()
    dev = pick_device(device)
    if not ranks.active:
        return ranks, dev
    if dev.type == "cuda":
        if ranks.local >= torch.cuda.device_count():
            raise UserError(f"{ranks.world} processes on this machine, but it has {torch.cuda.device_count()} "
                            f"CUDA GPUs; lower --gpus.")
        dev = torch.device("cuda", ranks.local)
        torch.cuda.set_device(dev)
    elif dev.type != "cpu":
        raise UserError("several processes train on CUDA GPUs or the CPU, not on Apple MPS; use --device cpu.")
    if not dist.is_initialized():
        dist.init_process_group("nccl" if dev.type == "cuda" else "gloo", timeout=TIMEOUT)
        atexit.register(finish)
    return ranks, dev


def per_rank(cfg: EngineConfig, world: int) -> EngineConfig:
    """The config one of `world` processes steps with: its share of every per-step batch."""
    if world <= 1:
        return cfg
    share = lambda b: max(1, b // world)
    return replace(cfg, train=replace(cfg.train, batch=share(cfg.train.batch)),
                   blend=replace(cfg.blend, batch=share(cfg.blend.batch)),
                   gamem=replace(cfg.gamem, depth_batch=share(cfg.gamem.depth_batch)),
                   detail=replace(cfg.detail, batch=share(cfg.detail.batch)))


class _Step(nn.Module):
    """The model with its loss function as forward(): DDP syncs gradients of what forward() used,
    and the loss calls the model's parts (lip field, Gamem, Blend-Net), not its forward()."""

    def __init__(self, model: nn.Module, loss_fn: Callable) -> None:
        super().__init__()
        self.model, self.loss_fn = model, loss_fn

    def forward(self, *args):
        return self.loss_fn(self.model, *args)


def stepper(model: nn.Module, loss_fn: Callable, ranks: Ranks, dev: torch.device) -> Callable:
    """f(*args) -> loss_fn(model, *args), with gradients averaged over the ranks when there are several."""
    if not ranks.active:
        return lambda *a: loss_fn(model, *a)
    from torch.nn.parallel import DistributedDataParallel as DDP

    # Unused parameters are normal here: Blend-Net sits out the lip stage.
    return DDP(_Step(model, loss_fn), device_ids=[dev.index] if dev.type == "cuda" else None,
               find_unused_parameters=True, broadcast_buffers=False)


def average_grads(params: Iterable[nn.Parameter], ranks: Ranks) -> None:
    """Average gradients over the ranks by hand (the critic, which trains outside DDP)."""
    if not ranks.active:
        return
    for p in params:
        if p.grad is not None:
            dist.all_reduce(p.grad)
            p.grad /= ranks.world


def all_mean(x: torch.Tensor, ranks: Ranks) -> torch.Tensor:
    if ranks.active:
        dist.all_reduce(x)
        x = x / ranks.world
    return x


def all_max(x: torch.Tensor, ranks: Ranks) -> torch.Tensor:
    if ranks.active:
        dist.all_reduce(x, op=dist.ReduceOp.MAX)
    return x


def digest(model: nn.Module) -> str:
    """A short hash of the weights: equal on every rank of a healthy run."""
    h = hashlib.sha1()
    for k, v in sorted(model.state_dict().items()):
        h.update(k.encode())
        h.update(v.detach().cpu().contiguous().reshape(-1).view(torch.uint8).numpy().tobytes())
    return h.hexdigest()[:16]


def check_same_weights(model: nn.Module, ranks: Ranks) -> str:
    """The weights' digest, after checking every rank has the same (a diverged rank is a bug)."""
    d = digest(model)
    if ranks.active:
        all_d: list = [None] * ranks.world
        dist.all_gather_object(all_d, d)
        if len(set(all_d)) != 1:
            raise RuntimeError(f"the {ranks.world} training processes ended with different weights ({all_d}).")
    return d


def finish() -> None:
    if dist.is_initialized():
        dist.destroy_process_group()


def launch(n: int, argv: list[str]) -> int:
    """Run `speech2lip <argv>` in n processes under torchrun; returns its exit status."""
    if n < 1:
        raise UserError(f"--gpus must be 1 or more (got {n}).")
    if torch.cuda.is_available() and n > torch.cuda.device_count():
        raise UserError(f"--gpus {n}, but this machine has {torch.cuda.device_count()} CUDA GPUs.")
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc-per-node={n}",
           "--max-restarts=0", "-m", "speech2lip.core.cli", *argv]
    # torchrun forwards SIGINT/SIGTERM to the workers, which save and stop; we wait for it.
    return subprocess.run(cmd).returncode
