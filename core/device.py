"""The one device helper: which device to compute on, what it is called, and how to run fast on it.

Training, dubbing, the CLI and the app all ask here, so "auto" means the same
thing everywhere, and a named device that is absent fails with one clear message.
"""
from __future__ import annotations

import contextlib

import torch

from .errors import UserError


def _mps_available() -> bool:
    return getattr(torch.backends, "mps", None) is not None and torch.backends.mps.is_available()


def pick_device(name: str = "auto") -> torch.device:
    """cuda > mps > cpu for 'auto'; a named device that is absent is a user error."""
    if name == "auto":
        if torch.cuda.is_available():
            return torch.device("cuda")
        if _mps_available():
            return torch.device("mps")
        return torch.device("cpu")
    if name == "cuda" and not torch.cuda.is_available():
        raise UserError("no CUDA GPU is available; use --device auto or cpu.")
    if name == "mps" and not _mps_available():
        raise UserError("Apple MPS is not available here; use --device auto or cpu.")
    if name not in ("cpu", "cuda", "mps"):
        raise UserError(f"unknown device {name!r}; use auto, cpu, cuda or mps.")
    return torch.device(name)


def describe(dev: torch.device) -> tuple[str, bool]:
    """(name a person recognises, is it a GPU) of a device from pick_device."""
    if dev.type == "cuda":
        return f"{torch.cuda.get_device_name(dev)} (CUDA)", True
    if dev.type == "mps":
        return "Apple GPU (MPS)", True
    return f"CPU ({torch.get_num_threads()} threads)", False


def tune(dev: torch.device) -> None:
    """TF32 matmuls and convolutions on CUDA: ~2x on Ampere and later, far below our loss noise."""
    if dev.type == "cuda":
        torch.set_float32_matmul_precision("high")
        torch.backends.cudnn.allow_tf32 = True
        torch.backends.cudnn.benchmark = True       # fixed training shapes: the autotuned kernel is reused


def cpu_has_bf16() -> bool:
    """True when the CPU computes bf16 natively (AVX512-BF16 or AMX); elsewhere it is emulated, and slower."""
    probes = ("_is_avx512_bf16_supported", "_is_amx_tile_supported")
    return any(getattr(torch.cpu, name, lambda: False)() for name in probes)


def amp_dtype(dev: torch.device, enabled: bool = True):
    """The autocast dtype for `dev`, or None for full fp32: bf16 where the GPU has it (no scaler
    needed: its range is fp32's), fp16 on older GPUs (with a GradScaler); bf16 on a CPU that has
    it natively (training steps ~25 % shorter on a 2-core AVX512-BF16 CPU, bench/quality.py); none on MPS."""
    if not enabled:
        return None
    if dev.type == "cuda":
        return torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
    if dev.type == "cpu" and cpu_has_bf16():
        return torch.bfloat16
    return None


def autocast(dev: torch.device, dtype):
    return torch.autocast(dev.type, dtype=dtype) if dtype is not None else contextlib.nullcontext()


def to_device(x: torch.Tensor, dev: torch.device) -> torch.Tensor:
    """Host tensor to `dev`: through pinned memory and an asynchronous copy on CUDA, so the
    copy overlaps the GPU's work instead of stalling the host."""
    if dev.type == "cuda":
        return x.pin_memory().to(dev, non_blocking=True)
    return x.to(dev)


def free_bytes(dev: torch.device) -> int:
    """Free memory of a CUDA device (0 elsewhere: nothing is kept resident off CUDA)."""
    if dev.type != "cuda":
        return 0
    free, _ = torch.cuda.mem_get_info(dev)
    return int(free)
