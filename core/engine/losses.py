"""Reconstruction losses (paper Eq. 7, 8): MSE plus a perceptual or structural term.

The paper's perceptual term is LPIPS (AlexNet). Its ImageNet weights must be
downloaded, so it is used only when the `lpips` package and the AlexNet weights
are already on disk. Otherwise, and by default in tests, an offline structural
term stands in: 1 - SSIM plus an L1 on image gradients, both needing no network.
"""
from __future__ import annotations

import importlib.util
from pathlib import Path
from typing import Optional

import torch
import torch.nn as nn
import torch.nn.functional as F

ALEXNET_FILE = "alexnet-owt-7be5be79.pth"


def _gaussian(win: int, sigma: float, device, dtype) -> torch.Tensor:
    x = torch.arange(win, device=device, dtype=dtype) - (win - 1) / 2
    g = torch.exp(-(x ** 2) / (2 * sigma ** 2))
    return g / g.sum()


def ssim(x: torch.Tensor, y: torch.Tensor, win: int = 7, sigma: float = 1.5) -> torch.Tensor:
    """Per-pixel SSIM map of (B, C, H, W) images in [0, 1] -> (B, C, H, W)."""
    c = x.shape[1]
    g = _gaussian(win, sigma, x.device, x.dtype)
    kx = g.view(1, 1, 1, win).expand(c, 1, 1, win)
    ky = g.view(1, 1, win, 1).expand(c, 1, win, 1)

    def blur(z):
        z = F.pad(z, (win // 2,) * 4, mode="reflect")
        return F.conv2d(F.conv2d(z, kx, groups=c), ky, groups=c)

    mx, my = blur(x), blur(y)
    vx = blur(x * x) - mx * mx
    vy = blur(y * y) - my * my
    cov = blur(x * y) - mx * my
    c1, c2 = 0.01 ** 2, 0.03 ** 2
    return ((2 * mx * my + c1) * (2 * cov + c2)) / ((mx * mx + my * my + c1) * (vx + vy + c2))


def gradient_l1(x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """(B, C, H, W) -> (B, 1, H, W) L1 difference of horizontal and vertical gradients."""
    dx = lambda z: F.pad(z[..., :, 1:] - z[..., :, :-1], (0, 1, 0, 0))
    dy = lambda z: F.pad(z[..., 1:, :] - z[..., :-1, :], (0, 0, 0, 1))
    return ((dx(x) - dx(y)).abs() + (dy(x) - dy(y)).abs()).mean(1, keepdim=True)


def structural(x: torch.Tensor, y: torch.Tensor, mask: Optional[torch.Tensor] = None) -> torch.Tensor:
    """Offline stand-in for LPIPS: (1 - SSIM) + 4 * gradient L1, optionally masked."""
    term = (1 - ssim(x, y)).mean(1, keepdim=True) + 4.0 * gradient_l1(x, y)
    return _masked_mean(term, mask)


def _masked_mean(v: torch.Tensor, mask: Optional[torch.Tensor]) -> torch.Tensor:
    if mask is None:
        return v.mean()
    m = mask.expand_as(v)
    return (v * m).sum() / (m.sum() + 1e-6)


def lpips_available() -> bool:
    """True when LPIPS could run with no download: the package and AlexNet weights are local."""
    if importlib.util.find_spec("lpips") is None:
        return False
    hub = Path(torch.hub.get_dir()) / "checkpoints" / ALEXNET_FILE
    return hub.is_file()


def load_lpips(device) -> Optional[nn.Module]:
    if not lpips_available():
        return None
    import lpips  # type: ignore[import-not-found]

    net = lpips.LPIPS(net="alex", verbose=False).to(device).eval()
    for p in net.parameters():
        p.requires_grad_(False)
    return net


class Reconstruction(nn.Module):
    """MSE + w_perc * (LPIPS if present, else the structural term). Returns (total, parts as detached tensors)."""

    def __init__(self, w_perc: float, w_lpips: float, use_lpips: bool = True, device="cpu") -> None:
        super().__init__()
        self.lpips = load_lpips(device) if use_lpips else None
        self.w = w_lpips if self.lpips is not None else w_perc
        self.kind = "lpips" if self.lpips is not None else "struct"

    def forward(self, pred: torch.Tensor, target: torch.Tensor,
                mask: Optional[torch.Tensor] = None) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        # SSIM's small variances need fp32 under AMP, convolutions included (bf16 made them -inf).
        with torch.autocast(pred.device.type, enabled=False):
            return self._forward(pred.float(), target.float(), mask)

    def _forward(self, pred: torch.Tensor, target: torch.Tensor,
                 mask: Optional[torch.Tensor]) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        # The parts stay detached tensors: reading them as numbers would stall a GPU every step.
        mse = _masked_mean(((pred - target) ** 2).mean(1, keepdim=True), mask)
        if self.w <= 0:
            return mse, {"mse": mse.detach()}
        if self.lpips is not None:
            p = pred if mask is None else pred * mask + target * (1 - mask)
            perc = self.lpips(p * 2 - 1, target * 2 - 1).mean()
        else:
            perc = structural(pred, target, mask)
        return mse + self.w * perc, {"mse": mse.detach(), self.kind: perc.detach()}


def psnr(pred: torch.Tensor, target: torch.Tensor) -> float:
    """PSNR (dB) of images in [0, 1] over the whole batch."""
    mse = float(((pred.float() - target.float()) ** 2).mean())
    return 10.0 * torch.log10(torch.tensor(1.0 / max(mse, 1e-10))).item()
