"""Reference-guided mouth detail: what turns the lip field's mean mouth into a sharp one.

A regression loss over a few minutes of one speaker averages every plausible mouth
into one blur: no teeth, soft lips, half the opening. The lip field (§4.2) still
decides the shape; these pieces, beside it, supply the texture:

ReferenceBank   the speaker's own training mouths, in canonical space, with small keys
                for a nearest-shape search (against the lip field's mouth) and a
                nearest-sound search (against the speech window, as retrieval does).
                Being canonical, a reference's teeth and lip edges already sit where
                the generated mouth's would. The lip field regresses towards the mean
                mouth, so shape neighbours open too little; sound neighbours bring the
                speaker's real openings for DetailNet to weigh.
DetailNet       a small U-Net over the lip field's mouth and its K nearest references.
                It predicts per-pixel weights over those K + 1 images plus a residual,
                so sharp real pixels are borrowed where the shapes agree.
PatchCritic     a PatchGAN discriminator on full-resolution mouths, trained from scratch
                on the clip (nothing downloaded): the standard remedy for a blur that
                scores well on MSE.

In training the references exclude frames within DetailConfig.exclude_s of the target,
so the net learns to borrow texture, never to copy the answer.
"""
from __future__ import annotations

import math
from typing import Optional

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F

from ..config import DetailConfig
from .unet import ConvBlock, unet


class ReferenceBank(nn.Module):
    """Training mouths (N, h, w, 3) uint8 and their frame indices; nearest-shape look-ups.

    Buffers are not saved in checkpoints: the bank is rebuilt from the project's
    mouth.npy, which the checkpoint is tied to already.
    """

    def __init__(self, mouths: np.ndarray, frames: np.ndarray, windows: Optional[np.ndarray] = None,
                 key_div: int = 8, shapes: Optional[np.ndarray] = None) -> None:
        super().__init__()
        m = torch.from_numpy(np.ascontiguousarray(mouths))                      # (N, h, w, 3) uint8
        self.key_shape = (max(2, m.shape[1] // key_div), max(2, m.shape[2] // key_div))
        self.register_buffer("mouths", m, persistent=False)
        self.register_buffer("frames", torch.as_tensor(np.asarray(frames), dtype=torch.long), persistent=False)
        keys = torch.cat([self._key(m[s:s + 256].permute(0, 3, 1, 2).float() / 255)
                          for s in range(0, len(m), 256)])                      # (N, D)
        self.register_buffer("keys", keys, persistent=False)
        sound = torch.zeros(len(m), 0) if windows is None else self._sound(torch.from_numpy(np.asarray(windows)))
        self.register_buffer("sound", sound, persistent=False)                 # (N, window * n_mels)
        # Tracked lip-shape coefficients (core.engine.data.lip_shapes); untracked rows are never nearest.
        art = torch.zeros(len(m), 0) if shapes is None else torch.from_numpy(np.asarray(shapes, np.float32))
        self.register_buffer("shapes", torch.nan_to_num(art, nan=1e6), persistent=False)   # (N, K)

    def _key(self, imgs: torch.Tensor) -> torch.Tensor:
        """(B, 3, h, w) in [0, 1] -> (B, D): the mouth at 1/8 resolution, its mean removed."""
        k = F.interpolate(imgs.float(), size=self.key_shape, mode="area").flatten(1)
        return k - k.mean(1, keepdim=True)

    @staticmethod
    def _sound(mel: torch.Tensor) -> torch.Tensor:
        """(B, window, n_mels) log-mel -> (B, D), each window's mean removed (a gain change is no new sound)."""
        k = mel.float().flatten(1)
        return k - k.mean(1, keepdim=True)

    def nearest(self, query: torch.Tensor, k: int, exclude: Optional[torch.Tensor] = None,
                window: int = 0, by_sound: bool = False, by_articulation: bool = False) -> torch.Tensor:
        """(B, 3, h', w') mouths, (B, window, n_mels) speech with by_sound, or (B, K) lip-shape
        coefficients with by_articulation -> (B, k) bank rows nearest in look (or sound, or
        articulation); rows within `window` frames of exclude (B,) are skipped."""
        if by_sound:
            d = torch.cdist(self._sound(query), self.sound)                    # (B, N)
        elif by_articulation:
            d = torch.cdist(query.float(), self.shapes)                        # (B, N)
        else:
            d = torch.cdist(self._key(query), self.keys)                       # (B, N)
        if exclude is not None and window > 0:
            near = (self.frames[None] - exclude[:, None].to(self.frames)).abs() < window
            d = d.masked_fill(near, float("inf"))
        return d.topk(min(k, d.shape[1]), dim=1, largest=False).indices

    def images(self, rows: torch.Tensor, dtype=torch.float32) -> torch.Tensor:
        """(B, k) rows -> (B, k, 3, h, w) float mouths in [0, 1]"""
        return self.mouths[rows].permute(0, 1, 4, 2, 3).to(dtype) / 255


def pool_frames(candidates: np.ndarray, limit: int) -> np.ndarray:
    """At most `limit` frames spread evenly over the candidates: memory stays flat on long clips."""
    if len(candidates) <= limit:
        return candidates
    return candidates[np.linspace(0, len(candidates) - 1, limit).round().astype(int)]


class DetailNet(nn.Module):
    """U-Net over [lip-field mouth, K references] -> weights over those K + 1 images and a residual."""

    def __init__(self, cfg: DetailConfig) -> None:
        super().__init__()
        self.cfg = cfg
        c0, c1, c2 = cfg.channels
        k = cfg.refs
        self.enc0 = ConvBlock(3 * (k + 1), c0)
        self.enc1 = ConvBlock(c0, c1)
        self.enc2 = ConvBlock(c1, c2)
        self.dec1 = ConvBlock(c2 + c1, c1)
        self.dec0 = ConvBlock(c1 + c0, c0)
        self.out = nn.Conv2d(c0, (k + 1) + 3, 1)
        # Start as the lip field's own mouth: all weight on it, no residual.
        nn.init.zeros_(self.out.weight)
        nn.init.zeros_(self.out.bias)
        with torch.no_grad():
            self.out.bias[0] = 4.0
        self.to(memory_format=torch.channels_last)

    def forward(self, coarse: torch.Tensor, refs: torch.Tensor) -> torch.Tensor:
        """coarse (B, 3, h, w) and refs (B, K, 3, h, w) in [0, 1] -> (B, 3, h, w)"""
        b, k, _, h, w = refs.shape
        srcs = torch.cat([coarse[:, None], refs], dim=1)                        # (B, K+1, 3, h, w)
        ph, pw = (-h) % 4, (-w) % 4                                             # U-Net sides: multiples of 4
        x = F.pad(srcs.flatten(1, 2) * 2 - 1, (0, pw, 0, ph), mode="replicate")
        x = x.contiguous(memory_format=torch.channels_last)

        o = self.out(unet(self, x))[..., :h, :w].contiguous()                   # (B, K+1+3, h, w)
        weights = o[:, :k + 1].softmax(1)                                       # (B, K+1, h, w)
        return (weights[:, :, None] * srcs).sum(1) + o[:, k + 1:]


class PatchCritic(nn.Module):
    """PatchGAN discriminator: one realism score per ~22 px patch of a mouth."""

    def __init__(self, channels: list[int]) -> None:
        super().__init__()
        sn = nn.utils.parametrizations.spectral_norm
        layers, c_in = [], 3
        for i, c in enumerate(channels):
            layers += [sn(nn.Conv2d(c_in, c, 4, stride=2 if i < 2 else 1, padding=1)), nn.LeakyReLU(0.2, True)]
            c_in = c
        layers.append(sn(nn.Conv2d(c_in, 1, 3, padding=1)))
        self.net = nn.Sequential(*layers)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """(B, 3, h, w) in [0, 1] -> (B, 1, about h/4 - 1, w/4 - 1) scores"""
        return self.net(x * 2 - 1)


def critic_loss(critic: PatchCritic, real: torch.Tensor, fake: torch.Tensor) -> torch.Tensor:
    """Least-squares GAN, critic side: real patches to 1, generated ones to 0."""
    return 0.5 * ((critic(real) - 1).pow(2).mean() + critic(fake.detach()).pow(2).mean())


def adversarial_loss(critic: PatchCritic, fake: torch.Tensor) -> torch.Tensor:
    """Least-squares GAN, generator side: generated patches should score as real."""
    return 0.5 * (critic(fake) - 1).pow(2).mean()


def exclusion_window(cfg: DetailConfig, fps: float) -> int:
    """Frames on each side of a training target whose mouths may not serve as its references."""
    return int(math.ceil(cfg.exclude_s * fps))
