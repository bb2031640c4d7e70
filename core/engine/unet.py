"""The light three-level U-Net shared by BlendNet (core/engine/model.py) and DetailNet
(core/engine/detail.py): its block, its forward pass, and a GroupNorm that stays fp32 under
mixed precision."""
from __future__ import annotations

import torch
import torch.nn as nn
import torch.nn.functional as F


class GroupNorm32(nn.GroupNorm):
    """GroupNorm computed in fp32 under mixed precision: its statistics want the range, and
    oneDNN's bf16 GroupNorm backward is three times slower than fp32 on a CPU."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        with torch.autocast(x.device.type, enabled=False):
            return super().forward(x.float()).to(x.dtype)


class ConvBlock(nn.Sequential):
    # GroupNorm instead of the official BatchNorm: batches here are a few crops, and
    # BatchNorm's running statistics would differ between training and rendering.
    def __init__(self, c_in: int, c_out: int) -> None:
        super().__init__(nn.Conv2d(c_in, c_out, 3, padding=1), GroupNorm32(4, c_out), nn.ReLU(inplace=True),
                         nn.Conv2d(c_out, c_out, 3, padding=1), GroupNorm32(4, c_out), nn.ReLU(inplace=True))


def unet(net: nn.Module, x: torch.Tensor) -> torch.Tensor:
    """The light three-level U-Net of BlendNet and DetailNet (their enc0..dec0 blocks):
    x (B, C, H, W) -> (B, c0, H, W) features; H and W multiples of 4."""
    e0 = net.enc0(x)                                                      # (B, c0, H, W)
    e1 = net.enc1(F.avg_pool2d(e0, 2))                                    # (B, c1, H/2, W/2)
    e2 = net.enc2(F.avg_pool2d(e1, 2))                                    # (B, c2, H/4, W/4)
    up = F.interpolate(e2, size=e1.shape[-2:], mode="bilinear", align_corners=False)
    d1 = net.dec1(torch.cat([up, e1], dim=1))
    up = F.interpolate(d1, size=e0.shape[-2:], mode="bilinear", align_corners=False)
    return net.dec0(torch.cat([up, e0], dim=1))
