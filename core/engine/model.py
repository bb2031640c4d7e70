"""The Speech2Lip model, top to bottom (paper §4).

LipField        F(x, a, t) -> RGB in the canonical mouth box (§4.2, Eq. 1)
continuous_sample  LIIF-style 4-corner area-weighted query for training (Eq. 2)
Gamem           learnable canonical full-head depth, O2C/C2O warps, depth loss (§4.3, Eq. 9)
BlendNet        light U-Net predicting a residual over the pasted crop (§4.4)
Speech2Lip      the three together, plus pasting a generated mouth into observed frames;
                core/engine/detail.py's DetailNet sits between the lip field and the paste

Conventions: images are float tensors in [0, 1], (B, C, H, W). Pixel coordinates
follow core/engine/warp.py (pixel j's centre at j + 0.5). A mouth coordinate x is the
canonical mouth box normalised to [0, 1]^2, so the field is resolution-free.
"""
from __future__ import annotations

import math
from typing import Callable, Optional

import torch
import torch.nn as nn
import torch.nn.functional as F

from ..config import BlendNetConfig, EngineConfig, GamemConfig, LipFieldConfig
from .detail import DetailNet, ReferenceBank
from .unet import ConvBlock, unet
from . import warp


# --- encodings -----------------------------------------------------------------------

def positional_encoding(x: torch.Tensor, n_freqs: int) -> torch.Tensor:
    """x (..., D) in [0, 1] -> (..., D + 2 * D * n_freqs): raw plus sin/cos at 2^k pi."""
    freqs = (2.0 ** torch.arange(n_freqs, device=x.device, dtype=x.dtype)) * math.pi
    ang = x[..., None] * freqs                                           # (..., D, n_freqs)
    enc = torch.cat([ang.sin(), ang.cos()], dim=-1).flatten(-2)          # (..., 2 D n_freqs)
    return torch.cat([x, enc], dim=-1)


def time_encoding(t: torch.Tensor, n_freqs: int) -> torch.Tensor:
    """t (B,) in [0, 1] -> (B, 2 n_freqs) low-frequency sinusoids: slow drift, not per-frame identity."""
    freqs = (2.0 ** torch.arange(n_freqs, device=t.device, dtype=t.dtype)) * math.pi
    ang = t[:, None] * freqs
    return torch.cat([ang.sin(), ang.cos()], dim=-1)


# --- the speech-driven implicit lip model ---------------------------------------------

class LipAudioEncoder(nn.Module):
    """Compact 1-D conv encoder of a mel window, averaged over a few time shifts.

    The shifted sub-windows are centred a few mel frames apart (+-40 ms); their
    weighted mean smooths the feature over time, which keeps the mouth from
    jittering with every phoneme boundary on speech it has never heard.
    """

    def __init__(self, cfg: LipFieldConfig) -> None:
        super().__init__()
        self.cfg = cfg
        layers, c_in = [], cfg.n_mels
        for c_out in cfg.audio_channels:
            layers += [nn.Conv1d(c_in, c_out, 3, stride=2, padding=1), nn.LeakyReLU(0.02)]
            c_in = c_out
        self.convs = nn.Sequential(*layers)
        t_out = cfg.sub_window
        for _ in cfg.audio_channels:
            t_out = (t_out + 1) // 2
        self.drop = nn.Dropout(cfg.dropout)
        self.fc = nn.Sequential(nn.Linear(c_in * t_out, cfg.audio_dim), nn.LeakyReLU(0.02),
                                nn.Linear(cfg.audio_dim, cfg.audio_dim))
        self.register_buffer("weights", torch.tensor(cfg.smooth_weights, dtype=torch.float32), persistent=False)

    def forward(self, mel: torch.Tensor) -> torch.Tensor:
        """mel (B, window, n_mels) -> (B, audio_dim)"""
        b, win, _ = mel.shape
        half, centre = self.cfg.sub_window // 2, win // 2
        subs = [mel[:, centre + s - half: centre + s + half] for s in self.cfg.smooth_shifts]
        # contiguous: oneDNN's conv1d is ten times slower on a transposed view.
        x = torch.stack(subs, dim=1).flatten(0, 1).transpose(1, 2).contiguous()   # (B*K, n_mels, sub)
        h = self.drop(self.convs(x)).flatten(1)                          # (B*K, C*T)
        h = self.fc(h).view(b, len(subs), -1)                            # (B, K, A)
        return (h * self.weights[None, :, None]).sum(1) / self.weights.sum()


class LipShapeHead(nn.Module):
    """Audio feature -> the frame's lip-shape coefficients (core.engine.data.lip_shapes), a training aid.

    Supervised by pixels alone, the audio feature of ~20 s of speech learns what a mouth looks
    like more than how far it opens, and on speech it has not heard the field damps the motion
    toward the mean mouth. Asking the same feature to predict the tracked lip shape makes it carry
    articulation explicitly. Rendering never calls it.
    """

    def __init__(self, cfg: LipFieldConfig) -> None:
        super().__init__()
        self.fc = nn.Linear(cfg.audio_dim, cfg.shape_dims)

    def forward(self, a: torch.Tensor) -> torch.Tensor:
        """a (B, audio_dim) -> (B, shape_dims)"""
        return self.fc(a)


class LipField(nn.Module):
    """F(x, a, t): additive fusion of coordinate, audio and time, then an MLP with a skip."""

    def __init__(self, cfg: LipFieldConfig) -> None:
        super().__init__()
        self.cfg = cfg
        w = cfg.width
        self.audio = LipAudioEncoder(cfg)
        self.shape_head = LipShapeHead(cfg) if cfg.shape_dims > 0 else None
        self.x_proj = nn.Linear(2 + 4 * cfg.x_freqs, w)
        self.a_proj = nn.Linear(cfg.audio_dim, w)
        self.t_proj = nn.Linear(2 * cfg.t_freqs, w) if cfg.t_freqs > 0 else None
        self.drop = nn.Dropout(cfg.dropout)
        self.layers = nn.ModuleList(
            nn.Linear(2 * w if i == cfg.skip_at else w, w) for i in range(cfg.n_layers))
        self.out = nn.Linear(w, 3)
        # The mean training mouth (as logits): the MLP learns what speech changes, not the face.
        self.register_buffer("prior", torch.zeros(1, 3, 2, 2))

    def set_prior(self, mean_mouth: torch.Tensor) -> None:
        """mean_mouth (3, h, w) in [0, 1]: the field starts as this image and learns residuals."""
        if self.cfg.prior:
            self.prior = torch.logit(mean_mouth.clamp(0.02, 0.98))[None].to(self.prior)

    def base(self, x: torch.Tensor) -> torch.Tensor:
        """x (B, P, 2) -> (B, P, 3) prior logits at the coordinates"""
        hp, wp = self.prior.shape[-2:]
        grid = (x * x.new_tensor([wp, hp]))[:, None]                                   # (B, 1, P, 2)
        return warp.sample(self.prior.expand(x.shape[0], -1, -1, -1), grid)[:, :, 0].transpose(1, 2)

    def condition(self, mel: torch.Tensor, t: torch.Tensor, audio: Optional[torch.Tensor] = None) -> torch.Tensor:
        """Per-frame part of the fused input: mel (B, window, n_mels), t (B,) -> (B, W);
        audio: self.audio(mel) when the caller has it already"""
        c = self.a_proj(self.drop(self.audio(mel) if audio is None else audio))
        if self.t_proj is not None:
            te = self.t_proj(time_encoding(t, self.cfg.t_freqs))
            if self.training and self.cfg.t_dropout > 0:
                # Whole-code dropout: the audio alone must explain the mouth, time only refines it.
                keep = (torch.rand(te.shape[0], 1, device=te.device) >= self.cfg.t_dropout).to(te.dtype)
                te = te * keep / (1 - self.cfg.t_dropout)
            c = c + te
        return c

    def embed(self, x: torch.Tensor) -> torch.Tensor:
        """x (..., 2) mouth coordinates -> (..., W) coordinate part of the fused input"""
        return self.x_proj(positional_encoding(x, self.cfg.x_freqs))

    def decode(self, xe: torch.Tensor, cond: torch.Tensor, base: torch.Tensor) -> torch.Tensor:
        """xe (B or 1, P, W) embedded coordinates, cond (B, W), base (B or 1, P, 3) prior logits
        -> (B, P, 3) RGB in [0, 1]"""
        h = xe + cond[:, None, :]                                         # (B, P, W)
        z = h
        for i, layer in enumerate(self.layers):
            if i == self.cfg.skip_at:
                # Same as layer(cat([z, h])), without materialising the concatenation.
                w = self.cfg.width
                z = F.linear(z, layer.weight[:, :w], layer.bias) + F.linear(h, layer.weight[:, w:])
            else:
                z = layer(z)
            z = F.relu_(z) if not torch.is_grad_enabled() else F.relu(z)
        return torch.sigmoid(self.out(z) + base)

    def forward(self, x: torch.Tensor, mel: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        """x (B, P, 2), mel (B, window, n_mels), t (B,) -> (B, P, 3)"""
        return self.decode(self.embed(x), self.condition(mel, t), self.base(x))

    def render(self, mel: torch.Tensor, t: torch.Tensor, h: int, w: int,
               audio: Optional[torch.Tensor] = None) -> torch.Tensor:
        """One query per pixel centre: -> (B, 3, h, w)"""
        cond = self.condition(mel, t, audio)
        x = pixel_coords(h, w, cond.device, cond.dtype).view(1, h * w, 2)
        return self.decode(self.embed(x), cond, self.base(x)).transpose(1, 2).reshape(-1, 3, h, w)


def pixel_coords(h: int, w: int, device=None, dtype=torch.float32) -> torch.Tensor:
    """(h, w, 2) pixel centres of an h x w image, normalised to [0, 1]^2."""
    scale = torch.tensor([1.0 / w, 1.0 / h], device=device, dtype=dtype)
    return warp.pixel_centres(h, w, device, dtype) * scale


# --- continuous sampling (Eq. 2) --------------------------------------------------------

_CORNERS = torch.tensor([[-0.5, -0.5], [0.5, -0.5], [-0.5, 0.5], [0.5, 0.5]])


def continuous_sample(query: Callable[[torch.Tensor], torch.Tensor], b: int, h: int, w: int,
                      device=None, generator: Optional[torch.Generator] = None) -> torch.Tensor:
    """Supervision at continuous positions: each pixel is the area-weighted blend of 4 queries.

    The 4 corners of a unit rectangle around the pixel centre, moved together by a
    random shift of at most 0.25 px, are queried; each corner is weighted by the
    area of the sub-rectangle opposite to it, so the weights sum to 1.
    query: (B, P, 2) normalised coordinates -> (B, P, 3)
    returns (B, 3, h, w)
    """
    centres = warp.pixel_centres(h, w, device)                            # (h, w, 2) px
    # Drawn on the CPU: the training generator lives there whatever the device.
    shift = ((torch.rand(b, h, w, 1, 2, generator=generator) - 0.5) * 0.5).to(device)
    offs = _CORNERS.to(device)                                            # (4, 2)
    corners = centres[None, :, :, None] + shift + offs                    # (B, h, w, 4, 2)
    # Weight of corner i = area between the pixel centre and the opposite corner.
    weights = (shift - offs).abs().prod(-1)                               # (B, h, w, 4)
    scale = torch.tensor([1.0 / w, 1.0 / h], device=device)
    rgb = query((corners * scale).view(b, h * w * 4, 2)).view(b, h, w, 4, 3)
    out = (rgb * weights[..., None]).sum(3)                               # (B, h, w, 3)
    return out.permute(0, 3, 1, 2)


# --- GAMEM: geometry-aware mutual explicit mapping ---------------------------------------

class Gamem(nn.Module):
    """A learnable canonical full-head depth and the warps it defines between spaces."""

    def __init__(self, cfg: GamemConfig, depth: torch.Tensor, head_mask: torch.Tensor,
                 face_mask: torch.Tensor) -> None:
        super().__init__()
        self.cfg = cfg
        self.depth = nn.Parameter(depth.clone().float())                  # (S, S) working px
        self.register_buffer("depth0", depth.clone().float())
        self.register_buffer("head_mask", head_mask.clone().float())
        self.register_buffer("face_mask", face_mask.clone().float())

    def o2c_grid(self, poses: torch.Tensor) -> torch.Tensor:
        return warp.o2c_grid(self.depth, self.head_mask, poses)

    def c2o_grid(self, poses: torch.Tensor) -> torch.Tensor:
        return warp.c2o_grid(self.depth, self.head_mask, poses, iters=self.cfg.c2o_iters)

    def c2o_region(self, poses: torch.Tensor, origins: torch.Tensor, region: tuple[int, int],
                   stride: Optional[int] = None) -> torch.Tensor:
        """C2O for a window of each observed frame, solved on a coarse grid and upsampled.

        Same fixed point as warp.c2o_grid, but pointwise: o2c(u) is evaluated by
        sampling depth and head mask at u, so no full-frame grid is built. The map
        is smooth over the mouth region, so solving every `stride` pixels loses
        nothing visible and makes pasting cheap.
        poses (B, 3, 4), origins (B, 2) window top-left (x, y), region (Rh, Rw)
        returns (B, Rh, Rw, 2) canonical pixel coordinates
        """
        rh, rw = region
        stride = stride or self.cfg.c2o_stride
        # Coarse nodes include the window's first and last pixel centres (align_corners upsampling).
        gh, gw = (rh - 2) // stride + 2, (rw - 2) // stride + 2
        ys = torch.linspace(0.5, rh - 0.5, gh, device=poses.device, dtype=poses.dtype)
        xs = torch.linspace(0.5, rw - 0.5, gw, device=poses.device, dtype=poses.dtype)
        x = torch.stack(torch.meshgrid(xs, ys, indexing="xy"), dim=-1)          # (gh, gw, 2)
        x = x[None] + origins[:, None, None, :].to(poses.dtype)                  # (B, gh, gw, 2) observed px
        lin, a = poses[:, :2, :2], poses[:, :2, 2]                               # (B, 2, 2), (B, 2)
        u = torch.einsum("bij,bhwj->bhwi", torch.linalg.inv(lin), x - poses[:, None, None, :2, 3])
        gy, gx = torch.gradient(self.depth)
        maps = torch.stack([self.depth, self.head_mask, gx, gy])[None].expand(poses.shape[0], 4, *self.depth.shape)
        eye = torch.eye(2, device=poses.device, dtype=poses.dtype)
        for _ in range(self.cfg.c2o_iters):
            # Newton steps, as warp.c2o_grid: the plain fixed point (planar part only) stalls
            # where the depth is steep and the head pitched, and pasted mouths went astray there.
            dm = warp.sample(maps, u).permute(0, 2, 3, 1)                        # (B, gh, gw, 4)
            p = torch.cat([u, dm[..., :1]], dim=-1)                              # (B, gh, gw, 3)
            fwd = torch.einsum("bij,bhwj->bhwi", poses[:, :2, :3], p) + poses[:, None, None, :2, 3]
            m = dm[..., 1:2]
            r = x - (m * fwd + (1 - m) * u)
            jac = lin[:, None, None] + a[:, None, None, :, None] * dm[..., None, 2:4]   # (B, gh, gw, 2, 2)
            jac = m[..., None] * jac + (1 - m[..., None]) * eye
            u = u + warp.newton_step(jac, r)
        if (gh, gw) == (rh, rw):
            return u
        return F.interpolate(u.permute(0, 3, 1, 2), size=(rh, rw), mode="bilinear",
                             align_corners=True).permute(0, 2, 3, 1)

    def o2c(self, frames: torch.Tensor, poses: torch.Tensor) -> torch.Tensor:
        """Observed frames (B, C, S, S) -> canonical space (B, C, S, S)"""
        return warp.sample(frames, self.o2c_grid(poses))

    def c2o(self, canon: torch.Tensor, poses: torch.Tensor) -> torch.Tensor:
        """Canonical images (B, C, S, S) -> each observed frame (B, C, S, S)"""
        return warp.sample(canon, self.c2o_grid(poses))

    def depth_loss(self, frames: torch.Tensor, poses: torch.Tensor, canonical: torch.Tensor,
                   offset: int = 0) -> torch.Tensor:
        """Eq. 9: observed frames warped O2C must match the canonical frame on head minus face.

        frames (B, 3, S, S), poses (B, 3, 4), canonical (3, S, S). With scale < 1 the
        loss looks at a strided subset of pixels (offset picks which one this step).
        """
        with fp32(frames):
            return self._depth_loss(frames.float(), poses.float(), canonical.float(), offset)

    def _depth_loss(self, frames, poses, canonical, offset):
        step = max(1, round(1 / self.cfg.scale))
        grid = self.o2c_grid(poses)[:, offset % step::step, offset % step::step]      # (B, s, s, 2)
        warped = warp.sample(frames, grid)
        target = canonical[None, :, offset % step::step, offset % step::step]
        mask = (self.head_mask * (1 - self.face_mask))[offset % step::step, offset % step::step]
        photo = (((warped - target) ** 2).mean(1) * mask).sum() / (mask.sum() * frames.shape[0] + 1e-6)
        # Smoothness of the learned change keeps the completed depth a plausible surface.
        d = self.depth - self.depth0
        smooth = (d[1:] - d[:-1]).pow(2).mean() + (d[:, 1:] - d[:, :-1]).pow(2).mean()
        return photo + self.cfg.smooth_weight * smooth


# --- Blend-Net ------------------------------------------------------------------------------

class BlendNet(nn.Module):
    """Light U-Net over composite RGB + hole mask + paste mask; its residual is added to the RGB.

    Fully convolutional: it blends a region around a pasted mouth, or fills the
    holes of a whole re-posed crop. Sides must be multiples of 4.
    """

    def __init__(self, cfg: BlendNetConfig) -> None:
        super().__init__()
        c0, c1, c2 = cfg.channels
        self.enc0 = ConvBlock(5, c0)
        self.enc1 = ConvBlock(c0, c1)
        self.enc2 = ConvBlock(c1, c2)
        self.dec1 = ConvBlock(c2 + c1, c1)
        self.dec0 = ConvBlock(c1 + c0, c0)
        self.out = nn.Conv2d(c0, 3, 1)
        # Start as the identity: an untrained Blend-Net leaves the paste as it is.
        nn.init.zeros_(self.out.weight)
        nn.init.zeros_(self.out.bias)
        # Channels-last: oneDNN runs these thin convolutions about twice as fast that way.
        self.to(memory_format=torch.channels_last)

    def forward(self, rgb: torch.Tensor, hole: torch.Tensor, paste: torch.Tensor) -> torch.Tensor:
        """rgb (B, 3, H, W) in [0, 1], hole/paste (B, 1, H, W) -> (B, 3, H, W)"""
        x = torch.cat([rgb * 2 - 1, hole, paste], dim=1).contiguous(memory_format=torch.channels_last)
        return rgb + self.out(unet(self, x)).contiguous()


# --- the whole model ----------------------------------------------------------------------

class Speech2Lip(nn.Module):
    """LipField (+ DetailNet) + Gamem + BlendNet, and the paste that joins them.

    box: canonical mouth box [x0, y0, w, h] in working px; size: working crop side S.
    """

    def __init__(self, cfg: EngineConfig, box: list[int], depth: torch.Tensor, head_mask: torch.Tensor,
                 face_mask: torch.Tensor) -> None:
        super().__init__()
        self.cfg = cfg
        self.lip = LipField(cfg.lip)
        self.detail = DetailNet(cfg.detail) if cfg.detail.enabled else None
        self.bank: Optional[ReferenceBank] = None           # set by set_bank(): the clip's own mouths
        self.gamem = Gamem(cfg.gamem, depth, head_mask, face_mask)
        self.blend = BlendNet(cfg.blend)
        self.box = [int(v) for v in box]
        self.size = int(depth.shape[-1])
        bw, bh = self.box[2], self.box[3]
        r = cfg.blend.region_scale
        # Blended region: a fixed size per model so batches stack; multiple of 8 for the U-Net.
        self.region = (min(self.size, _round8(bh * r)), min(self.size, _round8(bw * r)))   # (Rh, Rw)

    def mouth_shape(self, scale: float) -> tuple[int, int]:
        """(h, w) of a generated mouth at `scale` of the canonical box."""
        return max(4, round(self.box[3] * scale)), max(4, round(self.box[2] * scale))

    def field_shape(self) -> tuple[int, int]:
        """(h, w) at which the lip field is queried when rendering: DetailNet takes it at its training scale."""
        return self.mouth_shape(self.cfg.lip.scale if self.detail is not None else self.cfg.lip.render_scale)

    def set_bank(self, bank: ReferenceBank) -> None:
        self.bank = bank

    def refine(self, field: torch.Tensor, mel: torch.Tensor, exclude: Optional[torch.Tensor] = None,
               window: int = 0) -> torch.Tensor:
        """Lip-field mouths (B, 3, h', w') of speech mel (B, window, n_mels) -> full-box mouths (B, 3, h, w).

        With DetailNet, training mouths nearest in shape and nearest in sound (none within
        `window` frames of exclude (B,)) lend their texture; without it, a bilinear resize.
        """
        h, w = self.mouth_shape(1.0)
        up = field if tuple(field.shape[-2:]) == (h, w) else \
            F.interpolate(field, size=(h, w), mode="bilinear", align_corners=False)
        if self.detail is None:
            return up
        if self.bank is None:
            raise RuntimeError("DetailNet needs the reference bank; build the model with checkpoint.build_model")
        dc = self.cfg.detail
        n_art = dc.shape_refs if self.lip.shape_head is not None else 0
        n_look = dc.refs - dc.sound_refs - n_art
        picks = [self.bank.nearest(field.detach(), n_look, exclude, window),
                 self.bank.nearest(mel, dc.sound_refs, exclude, window, by_sound=True)]
        if n_art > 0:
            # The training mouths whose tracked lips have the shape the speech predicts: real
            # openings and teeth, where the lip field's own mouth opens too little.
            with torch.no_grad():
                shape = self.lip.shape_head(self.lip.audio(mel))                        # (B, shape_dims)
            picks.append(self.bank.nearest(shape, n_art, exclude, window, by_articulation=True))
        rows = torch.cat(picks, 1)                                                      # (B, K)
        return self.detail(up, self.bank.images(rows, up.dtype))

    def generate(self, mel: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        """The dubbing path's mouths: mel (B, window, n_mels), t (B,) -> (B, 3, h, w) at full box size"""
        return self.refine(self.lip.render(mel, t, *self.field_shape()), mel)

    def region_origin(self, poses: torch.Tensor) -> torch.Tensor:
        """(B, 2) integer top-left (x, y) of the blended region: centred on the observed box centre."""
        with fp32(poses):                      # bf16 holds a pixel coordinate near 200 only to 1 px
            return self._region_origin(poses.float())

    def _region_origin(self, poses: torch.Tensor) -> torch.Tensor:
        x0, y0, w, h = self.box
        cx, cy = x0 + w / 2, y0 + h / 2
        iy = min(self.size - 1, max(0, int(cy)))
        ix = min(self.size - 1, max(0, int(cx)))
        p = torch.stack([torch.full_like(poses[:, 0, 0], cx), torch.full_like(poses[:, 0, 0], cy),
                         self.gamem.depth[iy, ix].detach().expand_as(poses[:, 0, 0])], dim=-1)
        obs = torch.einsum("bij,bj->bi", poses[:, :, :3], p) + poses[:, :, 3]          # (B, 3)
        rh, rw = self.region
        ox = (obs[:, 0] - rw / 2).round().clamp(0, self.size - rw)
        oy = (obs[:, 1] - rh / 2).round().clamp(0, self.size - rh)
        return torch.stack([ox, oy], dim=-1).long()

    def blend_into(self, mouths: torch.Tensor, frames: torch.Tensor, poses: torch.Tensor):
        """The dubbing path: paste canonical mouths into working frames (B, 3, S, S), then Blend-Net.

        returns blended (B, 3, Rh, Rw), the observed region under it, the paste mask (B, 1, Rh, Rw)
        and the region origins (B, 2)
        """
        origins = self.region_origin(poses)
        region = crop_images(frames, origins, self.region)
        comp, m = self.paste(mouths, poses, origins, region)
        return self.blend(comp, torch.zeros_like(m), m).clamp(0, 1), region, m, origins

    def paste(self, mouths: torch.Tensor, poses: torch.Tensor, origins: torch.Tensor,
              frames_region: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Carry canonical mouths into observed frames with C2O and the learned depth.

        mouths (B, 3, hm, wm) canonical box images at any resolution; poses (B, 3, 4);
        origins (B, 2) region top-left; frames_region (B, 3, Rh, Rw) observed pixels there.
        returns composite (B, 3, Rh, Rw) and feathered paste mask (B, 1, Rh, Rw)
        """
        with fp32(mouths):                     # pixel coordinates up to S need fp32 under AMP
            return self._paste(mouths.float(), poses.float(), origins, frames_region.float())

    def _paste(self, mouths, poses, origins, frames_region):
        u = self.gamem.c2o_region(poses, origins, self.region)                        # (B, Rh, Rw, 2)
        x0, y0, bw, bh = self.box
        q = (u - u.new_tensor([x0, y0])) / u.new_tensor([bw, bh])                   # box-normalised
        hm, wm = mouths.shape[-2:]
        warped = warp.sample(mouths, q * q.new_tensor([wm, hm]), mode=warp.MOUTH_RESAMPLE, padding_mode="zeros")
        feather = max(1.0, self.cfg.blend.feather * min(bw, bh))
        edge = torch.minimum(q, 1 - q) * q.new_tensor([bw, bh]) / feather           # (B, Rh, Rw, 2)
        m = _smoothstep(edge.clamp(0, 1)).prod(-1)[:, None]                          # (B, 1, Rh, Rw)
        return frames_region * (1 - m) + warped * m, m


def fp32(like: torch.Tensor):
    """Turn mixed precision off for geometry: fp16 cannot hold pixel coordinates to a tenth of a pixel."""
    return torch.autocast(like.device.type, enabled=False)


def crop_grid(grid: torch.Tensor, origins: torch.Tensor, region: tuple[int, int]) -> torch.Tensor:
    """Crop (B, S, S, C) at per-sample origins (B, 2) (x, y) to (B, Rh, Rw, C)."""
    rh, rw = region
    b = grid.shape[0]
    ys = origins[:, 1, None] + torch.arange(rh, device=grid.device)                  # (B, Rh)
    xs = origins[:, 0, None] + torch.arange(rw, device=grid.device)                  # (B, Rw)
    return grid[torch.arange(b, device=grid.device)[:, None, None], ys[:, :, None], xs[:, None, :]]


def crop_images(imgs: torch.Tensor, origins: torch.Tensor, region: tuple[int, int]) -> torch.Tensor:
    """Crop (B, C, S, S) at per-sample origins to (B, C, Rh, Rw)."""
    return crop_grid(imgs.permute(0, 2, 3, 1), origins, region).permute(0, 3, 1, 2)


def _smoothstep(x: torch.Tensor) -> torch.Tensor:
    return x * x * (3 - 2 * x)


def _round8(v: float) -> int:
    return int(math.ceil(v / 8.0) * 8)
