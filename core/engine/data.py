"""The clip as training data: the project's arrays, memory-mapped, and batches drawn from them.

Frames stream from the project's memory-mapped arrays, so RAM stays flat whatever the
clip length. When the clip's frames and mouth crops fit in a CUDA GPU's free memory
(RESIDENT_SHARE of it), they are copied there once, as uint8, and batches are gathered on
the device; otherwise only each batch's rows travel, through pinned memory.
"""
from __future__ import annotations

from typing import Optional

import numpy as np
import torch
import torch.nn.functional as F

from .. import audio as A
from ..config import EngineConfig
from ..device import free_bytes, to_device
from ..errors import ProjectError
from ..project import Project, redo_advice

OPENING_BINS = 8            # histogram of training openings for balanced drawing (train.balance_opening)
RESIDENT_SHARE = 0.4        # the clip stays on the GPU when it takes at most this share of its free memory


class ClipData:
    """The project's arrays, memory-mapped, and batches drawn from them."""

    REQUIRED = ("frames", "mouth", "poses", "has_face", "mel", "depth", "head_mask", "face_mask")

    def __init__(self, project: Project, cfg: EngineConfig, device: torch.device) -> None:
        self.project, self.cfg, self.device = project, cfg, device
        for name in self.REQUIRED:
            project.array(name)                              # ProjectError if missing or unreadable
        n, s = project.n_frames, project.size
        x0, y0, bw, bh = project.manifest.mouth_box
        self.frames, self.mouth = project.frames, project.array("mouth")
        checks = [(self.frames.shape, (n, s, s, 3)), (self.mouth.shape, (n, bh, bw, 3)),
                  (project.array("poses").shape, (n, 3, 4)), (project.array("has_face").shape, (n,)),
                  (project.array("depth").shape, (s, s))]
        for got, want in checks:
            if tuple(got) != want:
                raise ProjectError(f"{project.root} is corrupt (an array has shape {tuple(got)}, expected {want}); "
                                   f"{redo_advice(project.root)}.")
        self.poses = torch.from_numpy(np.array(project.array("poses"), np.float32)).to(device)
        self.has_face = np.array(project.array("has_face"), bool)
        self.mel = torch.from_numpy(np.array(project.array("mel"), np.float32)).to(device)
        if not np.isfinite(project.array("poses")[self.has_face]).all():
            raise ProjectError(f"{project.root} has invalid head poses; {redo_advice(project.root)}.")
        self.n, self.fps = n, project.fps
        idx = np.arange(n)
        self.train_idx = idx[(idx < project.n_train) & self.has_face]
        self.held_idx = idx[(idx >= project.n_train) & self.has_face]
        if len(self.train_idx) < 16:
            raise ProjectError(f"{project.root} has only {len(self.train_idx)} training frames with a face; "
                               f"use a longer clip of the speaker.")
        ok = np.zeros(n, bool)
        ok[self.train_idx] = True
        # Frames whose +-2 neighbours are all usable: centres of 5-frame sync windows.
        self.sync_idx = np.array([i for i in self.train_idx if i >= 2 and i + 2 < n and ok[i - 2:i + 3].all()])
        self.draw_weights = self._opening_weights(cfg.train.balance_opening)
        self.lip_shape = None           # (N, K) targets of the lip field's LipShapeHead, NaN where untracked
        shapes = project_lip_shapes(project, cfg.lip.shape_dims) if cfg.train.w_shape > 0 else None
        if shapes is not None:
            self.lip_shape = torch.from_numpy(shapes).to(device)
        self.resident = self._keep_on_device()
        self.canonical = self.image(np.array([project.manifest.canonical_index]))[0]

    def _opening_weights(self, power: float) -> Optional[torch.Tensor]:
        """(len(train_idx),) how often a step draws each training frame, or None for uniformly.

        Wide openings are rare in speech, and a regression trained on the natural mix opens the
        mouth about half as far as the speaker on speech it has not heard. A frame's weight is
        the share of training frames in its opening bin to the power -`power`, so open mouths
        are drawn more often (0: the natural mix)."""
        if power <= 0 or not self.project.array_path("landmarks").is_file():
            return None
        from ..evaluation.metrics import lip_opening

        o = lip_opening(np.asarray(self.project.array("landmarks"))[self.train_idx])
        o = np.nan_to_num(o, nan=float(np.nanmedian(o)) if np.isfinite(o).any() else 0.0)
        lo, hi = np.percentile(o, [2, 98])
        bins = np.clip(((o - lo) / max(hi - lo, 1e-9) * OPENING_BINS).astype(int), 0, OPENING_BINS - 1)
        share = np.bincount(bins, minlength=OPENING_BINS)[bins] / len(bins)
        w = share ** -power
        return torch.as_tensor(w / w.sum(), dtype=torch.float64)

    def shape_loss(self, pred: torch.Tensor, idx: np.ndarray) -> torch.Tensor:
        """Squared error of predicted lip-shape coefficients (B, K) against frames idx's, over the
        frames that have them; in units of the training shapes' total variance."""
        target = self.lip_shape[torch.as_tensor(np.asarray(idx), device=pred.device)]
        ok = torch.isfinite(target).all(1)
        err = (pred.float() - torch.nan_to_num(target)).pow(2).sum(1)
        return (err * ok).sum() / ok.sum().clamp(min=1)

    def draw(self, b: int, gen: torch.Generator) -> np.ndarray:
        """(b,) training frames for one step."""
        if self.draw_weights is None:
            return self.train_idx[torch.randint(len(self.train_idx), (b,), generator=gen).numpy()]
        return self.train_idx[torch.multinomial(self.draw_weights, b, replacement=True, generator=gen).numpy()]

    def _keep_on_device(self) -> bool:
        """Copy frames and mouths to a roomy CUDA GPU once, in chunks (host RAM stays flat)."""
        need = self.frames.nbytes + self.mouth.nbytes
        if self.device.type != "cuda" or need > RESIDENT_SHARE * free_bytes(self.device):
            return False
        def load(arr):
            out = torch.empty(arr.shape, dtype=torch.uint8, device=self.device)
            for s in range(0, len(arr), 256):
                out[s:s + 256] = to_device(torch.from_numpy(np.ascontiguousarray(arr[s:s + 256])), self.device)
            return out
        self.frames_dev, self.mouth_dev = load(self.frames), load(self.mouth)
        return True

    def _gather(self, arr: np.ndarray, resident: Optional[torch.Tensor], idx: np.ndarray) -> torch.Tensor:
        """(B, 3, h, w) float in [0, 1] of rows idx of a (N, h, w, 3) uint8 array; only those rows travel."""
        if resident is not None:
            x = resident[torch.as_tensor(np.asarray(idx), device=self.device)]
        else:
            x = to_device(torch.from_numpy(np.stack([arr[i] for i in idx])), self.device)
        return x.permute(0, 3, 1, 2).float() / 255

    def image(self, idx: np.ndarray) -> torch.Tensor:
        """(B, 3, S, S) float frames"""
        return self._gather(self.frames, self.frames_dev if self.resident else None, idx)

    def mouths(self, idx: np.ndarray, shape: tuple[int, int]) -> torch.Tensor:
        """(B, 3, h, w) ground-truth canonical mouths, area-resized to `shape`"""
        m = self._gather(self.mouth, self.mouth_dev if self.resident else None, idx)
        return m if tuple(m.shape[-2:]) == tuple(shape) else F.interpolate(m, size=shape, mode="area")

    def times(self, idx: np.ndarray, gen: Optional[torch.Generator] = None) -> torch.Tensor:
        """(B,) time codes of the frames; jittered by about a second in training (gen given), so
        the code carries slow drift (light, shading) and cannot single out a frame to memorise."""
        t = torch.as_tensor(idx / max(1, self.n), dtype=torch.float32)
        if gen is not None and self.cfg.train.aug_time > 0:
            t = t + torch.randn(len(idx), generator=gen) * self.cfg.train.aug_time * self.fps / max(1, self.n)
        return t.to(self.device)

    def windows(self, idx: np.ndarray, gen: Optional[torch.Generator] = None) -> torch.Tensor:
        """(B, window, n_mels) mel windows at the frames' timestamps; augmented when gen is given.

        Augmentation acts on the audio side only (the prototype's lesson): a gain
        offset, additive noise and a small time stretch of the window.
        """
        lc, tc = self.cfg.lip, self.cfg.train
        # Same centring as audio.mel_windows: the mel frame nearest the frame's timestamp.
        centre = torch.as_tensor(np.round(np.asarray(idx) / self.fps * A.MEL_RATE),
                                 dtype=torch.float32, device=self.device)
        offs = torch.arange(lc.mel_window, device=self.device, dtype=torch.float32) - lc.mel_window // 2
        b = len(idx)
        if gen is None:
            pos = centre[:, None] + offs[None]
        else:
            r = 1 + (torch.rand(b, 1, generator=gen) * 2 - 1).to(self.device) * tc.aug_stretch
            pos = centre[:, None] + offs[None] * r
        pos = pos.clamp(0, len(self.mel) - 1)
        i0 = pos.floor().long()
        i1 = (i0 + 1).clamp(max=len(self.mel) - 1)
        frac = (pos - i0)[..., None]
        w = self.mel[i0] * (1 - frac) + self.mel[i1] * frac                     # (B, window, n_mels)
        if gen is not None:
            gain = (torch.rand(b, 1, 1, generator=gen) * 2 - 1) * tc.aug_gain
            noise = torch.randn(w.shape, generator=gen) * tc.aug_noise
            w = w + (gain + noise).to(self.device)
        return w


def project_lip_shapes(project: Project, k: int) -> Optional[np.ndarray]:
    """(N, k) lip_shapes of a project's frames, fitted on its training frames with a face;
    None when k is 0 or the project has no landmarks."""
    if k <= 0 or not project.array_path("landmarks").is_file():
        return None
    n = project.n_train
    train_idx = np.nonzero(np.asarray(project.array("has_face"), bool)[:n])[0]
    return lip_shapes(np.asarray(project.array("landmarks")), np.asarray(project.array("poses")), train_idx, k)


def lip_shapes(landmarks: np.ndarray, poses: np.ndarray, train_idx: np.ndarray, k: int) -> np.ndarray:
    """(N, k) float32 lip-shape coefficients: the principal components of the training frames'
    lips, in the canonical pose, scaled so their summed variance over training is 1.

    landmarks (N, 478, 2+) tracked mesh points, poses (N, 3, 4) canonical -> observed. The points
    are centred on the lips and mapped back through the inverse of the pose's in-plane part, so
    head turns and distance drop out and what is left is articulation. NaN rows: no usable track.
    """
    from ..prepare.faces import LIPS

    pts = np.asarray(landmarks, np.float64)[:, LIPS, :2]                 # (N, P, 2) observed px
    lin = np.asarray(poses, np.float64)[:, :2, :2]
    ok = np.isfinite(pts).all(axis=(1, 2)) & np.isfinite(lin).all(axis=(1, 2))
    ok &= np.abs(np.linalg.det(np.where(ok[:, None, None], lin, np.eye(2)))) > 1e-6
    lin = np.where(ok[:, None, None], lin, np.eye(2))
    centred = np.nan_to_num(pts - pts.mean(1, keepdims=True))
    canon = np.einsum("nij,npj->npi", np.linalg.inv(lin), centred).reshape(len(pts), -1)   # (N, 2P)
    fit = np.asarray(train_idx)[ok[train_idx]]
    out = np.full((len(pts), k), np.nan, np.float32)
    if len(fit) < 2:
        return out
    mean = canon[fit].mean(0)
    _, sv, vt = np.linalg.svd(canon[fit] - mean, full_matrices=False)
    total = np.sqrt((sv ** 2).sum() / len(fit))
    basis = vt[:k] * np.sign(vt[np.arange(len(vt[:k])), np.abs(vt[:k]).argmax(1)])[:, None]   # SVD's sign, fixed
    coef = (canon - mean) @ basis.T / max(total, 1e-9)
    out[ok, :coef.shape[1]] = coef[ok]
    return out


def hole_mask(b: int, h: int, w: int, gen: torch.Generator, device) -> torch.Tensor:
    """(B, 1, h, w) black holes: random blobs plus scattered dropped pixels, in {0, 1}."""
    coarse = torch.rand(b, 1, max(2, h // 12), max(2, w // 12), generator=gen)
    blobs = F.interpolate(coarse, size=(h, w), mode="bicubic", align_corners=False)
    level = 0.25 + 0.5 * torch.rand(b, 1, 1, 1, generator=gen)                  # 10-50 % of the area
    holes = (blobs > 1 - level * 0.6) | (torch.rand(b, 1, h, w, generator=gen) < 0.05)
    return holes.float().to(device)
