"""WeightAverage: the exponential moving average of the weights, which is what renders.

On a clip of a few hundred frames the held-out mouth moves by up to a decibel from one
checkpoint to the next (bench/quality.py histories): the last step's weights are one
draw from that noise. Their running average sits in the middle of it. The loop keeps the
raw weights for the optimiser and resuming; held-out figures, previews and every render
path use the average (checkpoint.load_model).
"""
from __future__ import annotations

from contextlib import contextmanager
from typing import Iterator

import torch
import torch.nn as nn


class WeightAverage:
    """EMA of a model's parameters, with the usual warm-up: decay min(d, (1 + n) / (10 + n)) at
    update n, so a run of a few dozen steps is averaged over its own length, not over its start."""

    def __init__(self, model: nn.Module, decay: float) -> None:
        self.decay = float(decay)
        self.names = [n for n, _ in model.named_parameters()]
        self.shadow = [p.detach().clone().float() for _, p in model.named_parameters()]
        self.updates = 0

    @torch.no_grad()
    def update(self, model: nn.Module) -> None:
        d = min(self.decay, (1 + self.updates) / (10 + self.updates))
        params = [p.detach().float() for _, p in model.named_parameters()]
        torch._foreach_lerp_(self.shadow, params, 1.0 - d)
        self.updates += 1

    def state_dict(self) -> dict[str, object]:
        return {"updates": self.updates, "weights": dict(zip(self.names, self.shadow))}

    def load_state_dict(self, state: dict) -> None:
        weights = state["weights"]
        self.shadow = [weights[n].detach().clone().float().to(s.device) for n, s in zip(self.names, self.shadow)]
        self.updates = int(state["updates"])

    @torch.no_grad()
    def copy_to(self, model: nn.Module) -> None:
        for (_, p), s in zip(model.named_parameters(), self.shadow):
            p.copy_(s.to(p.dtype))

    @contextmanager
    def applied(self, model: nn.Module) -> Iterator[nn.Module]:
        """The model with the averaged weights inside the block, its own weights again after it."""
        saved = [p.detach().clone() for p in model.parameters()]
        self.copy_to(model)
        try:
            yield model
        finally:
            with torch.no_grad():
                for p, s in zip(model.parameters(), saved):
                    p.copy_(s)


def apply_saved_average(model: nn.Module, ckpt: dict) -> bool:
    """Load a checkpoint's averaged weights into `model` (True), or leave its raw ones (False: no average saved)."""
    state = ckpt.get("ema")
    if not state:
        return False
    weights = state["weights"]
    missing = [n for n, _ in model.named_parameters() if n not in weights]
    if missing:
        raise KeyError(missing[0])
    model.load_state_dict(weights, strict=False)      # parameters only: buffers keep what `model` holds
    return True
