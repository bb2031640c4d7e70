"""The training sync expert and the contrastive sync loss (paper §4.4, Eq. 6).

Not to be confused with the evaluation's sync probe (core.evaluation.sync_probe), metrics.SyncReading (an
offset measurement) or bench/sync_ablation.py (docs/architecture.md, "Four syncs").

With no pretrained weights at hand, the expert learns from the user's own clip:
an audio encoder over the mel window of a frame and a lower-face encoder over
the 5 canonical mouth crops around it map into one space where matching
timestamps lie close. Training is InfoNCE whose negatives include the same
clip's audio a few frames off (±1..±15), so the expert learns offset, not just
which speech goes with which face. Frozen, it then scores the generator's
mouths against their audio (contrastive_sync_loss).
"""
from __future__ import annotations

import math
import time
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Optional

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F

from ..audio import MEL_RATE, WINDOW as MEL_WINDOW, frame_times, mel_windows
from ..errors import CheckpointError, ProjectError
from ..jobs import CancelToken, Progress, ProgressFn, ensure_token, no_progress
from ..project import Project, ProjectFolder, atomic_path, looks_like_project
FORMAT = "speech2lip-sync-expert"


@dataclass
class SyncConfig:
    frame_dim: int = 16                            # features per video frame; embedding = window * frame_dim
    mel_bands: int = 24                            # learnt projection of the 80 mel bands
    audio_width: int = 48                          # channels of the dilated Conv1d stack over mel time
    audio_dilations: tuple[int, ...] = (1, 2, 4, 4)  # kernel 5: a receptive field of +-220 ms
    frame_widths: tuple[int, ...] = (16, 32, 32)   # Conv2d channels of the per-frame mouth encoder
    window: int = 5                                # mouth frames per sample, k-2..k+2
    mel_window: int = MEL_WINDOW                   # mel frames per audio window (100 fps)
    fps: float = 30.0                              # video frame rate the expert was trained at
    mouth_hw: tuple[int, int] = (40, 52)           # mouths are resized to this (h, w)
    max_offset: int = 15                           # evaluation span, in frames
    runs: int = 4                                  # a batch is `runs` runs of consecutive frames...
    run_length: int = 16                           # ...so neighbours in a run are near-offset negatives
    steps: int = 300                               # held-out accuracy plateaus by here on a 20 s clip
    minutes: Optional[float] = None                # wall-clock cap, if set
    temperature: float = 0.1
    lr: float = 3e-3
    weight_decay: float = 1e-3
    dropout: float = 0.2
    seed: int = 0

    @property
    def dim(self) -> int:
        return self.window * self.frame_dim


# --- encoders ------------------------------------------------------------------------
# Both encoders describe each of the 5 frame times separately with shared weights, and
# the embedding concatenates the 5 descriptions, so cosine similarity sums per-frame
# agreement. What the expert learns is a local mouth-shape <-> sound mapping; timing
# comes from lining the sequences up, which generalises from a short clip where
# memorising whole windows does not.

class ExpertAudioEncoder(nn.Module):
    """Mel window (B, T, 80) -> (B, window, F): a dilated Conv1d stack at 100 Hz,
    read out at the 5 video-frame times around the window centre."""

    def __init__(self, cfg: SyncConfig) -> None:
        super().__init__()
        self.cfg = cfg
        self.bands = nn.Linear(80, cfg.mel_bands)
        layers, c_in = [], cfg.mel_bands
        for d in cfg.audio_dilations:
            layers += [nn.Conv1d(c_in, cfg.audio_width, 5, 1, 2 * d, dilation=d),
                       nn.GroupNorm(8, cfg.audio_width), nn.LeakyReLU(0.02), nn.Dropout(cfg.dropout)]
            c_in = cfg.audio_width
        self.conv = nn.Sequential(*layers)
        self.out = nn.Conv1d(c_in, cfg.frame_dim, 1)

    def forward(self, mel: torch.Tensor) -> torch.Tensor:
        h = self.out(self.conv(self.bands(mel).transpose(1, 2)))            # (B, F, T)
        t = mel.shape[1]
        step = 100.0 / self.cfg.fps                                         # mel frames per video frame
        pos = t // 2 + step * (torch.arange(self.cfg.window, device=mel.device) - self.cfg.window // 2)
        lo = pos.floor().long().clamp(0, t - 2)
        frac = (pos - lo).clamp(0, 1)
        return (h[..., lo] * (1 - frac) + h[..., lo + 1] * frac).transpose(1, 2)  # (B, window, F)


class ExpertMouthEncoder(nn.Module):
    """Mouth crops (B, window, 3, h, w) -> (B, window, F): one small CNN per frame."""

    def __init__(self, cfg: SyncConfig) -> None:
        super().__init__()
        layers, c_in = [], 3
        h, w = cfg.mouth_hw
        for c in cfg.frame_widths:
            layers += [nn.Conv2d(c_in, c, 3, 2, 1), nn.GroupNorm(8, c), nn.LeakyReLU(0.02)]
            c_in, h, w = c, (h - 1) // 2 + 1, (w - 1) // 2 + 1
        self.conv = nn.Sequential(*layers)
        self.drop = nn.Dropout(cfg.dropout)
        self.out = nn.Linear(c_in * h * w, cfg.frame_dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, n = x.shape[:2]
        # Per-window brightness removed (lighting is not sync), a fixed scale: dividing by the
        # window's own contrast would blow up the gradients of a flat, generated mouth.
        x = (x - x.mean(dim=(1, 2, 3, 4), keepdim=True)) / 0.2
        h = self.conv(x.flatten(0, 1))                                      # (B*n, C, h', w')
        return self.out(self.drop(h.flatten(1))).reshape(b, n, -1)          # (B, n, F)


class SyncExpert(nn.Module):
    def __init__(self, cfg: Optional[SyncConfig] = None) -> None:
        super().__init__()
        self.cfg = cfg or SyncConfig()
        self.audio = ExpertAudioEncoder(self.cfg)
        self.mouth = ExpertMouthEncoder(self.cfg)

    def resize(self, mouths: torch.Tensor) -> torch.Tensor:
        """(B, 5, 3, h, w) any size -> (B, 5, 3, *mouth_hw), differentiable."""
        b, n, c, h, w = mouths.shape
        th, tw = self.cfg.mouth_hw
        if (h, w) == (th, tw):
            return mouths
        return _resize(mouths.reshape(b * n, c, h, w), (th, tw)).reshape(b, n, c, th, tw)

    def embed_audio(self, mel: torch.Tensor) -> torch.Tensor:
        """(B, 40, 80) mel windows -> (B, D) unit vectors."""
        return F.normalize(self.audio(mel.float()).flatten(1), dim=-1)

    def embed_video(self, mouths: torch.Tensor) -> torch.Tensor:
        """(B, 5, 3, h, w) mouth crops in [0, 1] -> (B, D) unit vectors."""
        return F.normalize(self.mouth(self.resize(mouths.float())).flatten(1), dim=-1)

    def freeze(self) -> "SyncExpert":
        self.eval()
        self.requires_grad_(False)
        return self


def _resize(x: torch.Tensor, hw: tuple[int, int]) -> torch.Tensor:
    """Area averaging when shrinking (alias-free), bilinear when growing."""
    if x.shape[-2] >= hw[0] and x.shape[-1] >= hw[1]:
        return F.interpolate(x, size=hw, mode="area")
    return F.interpolate(x, size=hw, mode="bilinear", align_corners=False)


# --- the loss the generator trains with ----------------------------------------------

def contrastive_sync_loss(expert: SyncExpert, gen_mouths: torch.Tensor, mel_pos: torch.Tensor,
                          mel_neg: torch.Tensor) -> torch.Tensor:
    """Eq. 6: InfoNCE over cosine similarities, the matching audio against K unsynced windows.

    gen_mouths: (B, 5, 3, h, w) generated canonical mouths in [0, 1] (gradients flow to them)
    mel_pos: (B, 40, 80) audio windows of the same timestamps
    mel_neg: (B, K, 40, 80) audio windows of other timestamps (use sample_negative_frames)
    returns a scalar; the expert stays frozen
    """
    if expert.training or any(p.requires_grad for p in expert.parameters()):
        expert.freeze()
    b, k = mel_neg.shape[:2]
    with torch.no_grad():
        a = expert.embed_audio(torch.cat([mel_pos[:, None], mel_neg], dim=1).flatten(0, 1))
        a = a.reshape(b, k + 1, -1)                                          # (B, 1+K, D)
    v = expert.embed_video(gen_mouths)                                       # (B, D)
    logits = torch.einsum("bd,bkd->bk", v, a.to(v.dtype)) / expert.cfg.temperature
    return F.cross_entropy(logits, torch.zeros(b, dtype=torch.long, device=logits.device))


def sample_negative_frames(frames: np.ndarray, n_frames: int, k: int, max_offset: int = 15,
                           min_offset: int = 2, rng: Optional[np.random.Generator] = None) -> np.ndarray:
    """(B, K) frame indices of unsynced audio for anchors `frames`: half near (±min..±max
    offset, which teaches timing), half anywhere else in the clip."""
    rng = rng or np.random.default_rng()
    frames = np.asarray(frames).reshape(-1, 1)
    n_near = (k + 1) // 2
    mag = rng.integers(min_offset, max_offset + 1, size=(len(frames), n_near))
    near = frames + mag * rng.choice([-1, 1], size=mag.shape)
    # Any shift in (max_offset, n - max_offset) lands more than max_offset away, even wrapped.
    far = frames + rng.integers(max_offset + 1, max(max_offset + 2, n_frames - max_offset), size=(len(frames), k - n_near))
    out = np.concatenate([near, far % n_frames], axis=1)
    # Reflect near ones that fall off the clip back inside, still off by the same amount.
    out = np.where(out < 0, frames + np.abs(out - frames), out)
    out = np.where(out >= n_frames, frames - np.abs(out - frames), out)
    return np.clip(out, 0, n_frames - 1)


# --- data from a prepared project ----------------------------------------------------

class _ClipData:
    """Mouth stacks and mel of one clip, resized once into RAM as uint8 (small)."""

    def __init__(self, project: Project, cfg: SyncConfig, device: torch.device) -> None:
        mouth = project.array("mouth")                                      # (N, h, w, 3) uint8
        has_face = np.asarray(project.array("has_face"), bool)
        th, tw = cfg.mouth_hw
        chunks = []
        for i in range(0, len(mouth), 256):
            x = torch.from_numpy(np.array(mouth[i:i + 256])).permute(0, 3, 1, 2).float()
            x = _resize(x, (th, tw))
            chunks.append(x.round().clamp(0, 255).to(torch.uint8))
        self.mouth = torch.cat(chunks).to(device)                           # (N, 3, th, tw)
        self.mel = torch.from_numpy(np.array(project.array("mel"), np.float32)).to(device)  # (T, 80)
        self.mel_np = np.asarray(project.array("mel"), np.float32)
        self.n = project.n_frames
        self.n_train = project.n_train
        self.fps = project.fps
        self.times = frame_times(self.n, self.fps)
        self.centre = torch.from_numpy(np.round(self.times * MEL_RATE)).to(device)
        half = cfg.window // 2
        ok = np.array([has_face[max(0, k - half):k + half + 1].all() and half <= k < self.n - half
                       for k in range(self.n)])
        self.ok = ok

    def stacks(self, frames: torch.Tensor, half: int) -> torch.Tensor:
        """(B,) centre frames -> (B, 5, 3, h, w) float in [0, 1]."""
        idx = frames[:, None] + torch.arange(-half, half + 1, device=frames.device)[None]
        return self.mouth[idx].float() / 255.0


def _audio_batch(data: _ClipData, frames: torch.Tensor, window: int, augment: bool,
                 gen: torch.Generator) -> torch.Tensor:
    """(B,) frame indices -> (B, window, 80) mel windows, as audio.mel_windows, optionally augmented:
    a small time stretch about the centre, gain, noise and a frequency mask."""
    b, dev = frames.shape[0], data.mel.device
    # Random draws come from a CPU generator (reproducible on any device), then move.
    offs = torch.arange(window, device=dev, dtype=torch.float32) - window // 2
    stretch = (1.0 + (torch.rand(b, 1, generator=gen) - 0.5) * 0.2).to(dev) if augment else torch.ones(b, 1, device=dev)
    pos = (data.centre[frames].float()[:, None] + offs[None] * stretch).clamp(0, len(data.mel) - 1)
    lo = pos.floor().long()
    hi = (lo + 1).clamp(max=len(data.mel) - 1)
    t = (pos - lo)[..., None]
    mel = data.mel[lo] * (1 - t) + data.mel[hi] * t                         # (B, window, 80)
    if augment:
        mel = mel + (0.3 * torch.randn(b, 1, 1, generator=gen)).to(dev)   # gain (log domain)
        mel = mel + (0.15 * torch.randn(mel.shape, generator=gen)).to(dev)  # noise
        f0 = torch.randint(0, 72, (b, 1, 1), generator=gen).to(dev)
        width = torch.randint(0, 9, (b, 1, 1), generator=gen).to(dev)
        band = torch.arange(80, device=dev)[None, None]
        mel = torch.where((band >= f0) & (band < f0 + width), torch.zeros_like(mel), mel)
    return mel


def _augment_mouths(x: torch.Tensor, gen: torch.Generator) -> torch.Tensor:
    """Per-sample colour jitter and a small affine jitter (shift, scale, rotation), the same
    across a sample's 5 frames (prepare's alignment is good, not perfect, and neither is a
    generated mouth's), then noise and blur."""
    b, n, c, h, w = x.shape
    dev = x.device
    r = lambda *shape: (torch.rand(*shape, generator=gen) * 2 - 1).to(dev)
    x = (x * (1 + 0.15 * r(b, 1, 1, 1, 1)) + 0.05 * r(b, 1, c, 1, 1)).clamp(0, 1)
    ang, sc = 0.05 * r(b), 1 + 0.06 * r(b)                                 # radians, scale
    cos, sin = torch.cos(ang) * sc, torch.sin(ang) * sc
    shift = r(b, 2) * torch.tensor([4.0 / w, 4.0 / h], device=dev)         # up to 2 px
    theta = torch.stack([torch.stack([cos, -sin, shift[:, 0]], 1), torch.stack([sin, cos, shift[:, 1]], 1)], 1)
    grid = F.affine_grid(theta, (b, c, h, w), align_corners=False)          # (B, h, w, 2)
    grid = grid[:, None].expand(b, n, h, w, 2).reshape(b * n, h, w, 2)
    out = F.grid_sample(x.reshape(b * n, c, h, w), grid, padding_mode="border", align_corners=False)
    # Pixel noise and, for half the samples, a blur: what a generated mouth looks like. The
    # expert then judges lip shape, not texture, and its gradients stay smooth.
    blur = F.avg_pool2d(out, 3, 1, 1, count_include_pad=False)
    soft = (torch.rand(b, generator=gen) < 0.5).to(dev).repeat_interleave(n)[:, None, None, None]
    out = torch.where(soft, blur, out) + 0.02 * torch.randn(out.shape, generator=gen).to(dev)
    return out.reshape(b, n, c, h, w)


# --- evaluation ----------------------------------------------------------------------

@torch.no_grad()
def offset_scores(expert: SyncExpert, data: _ClipData, frames: np.ndarray, max_offset: int) -> np.ndarray:
    """(M, 2*max_offset+1) cosine similarity of each frame's mouth stack with audio shifted by
    -max_offset..+max_offset frames. Audio comes from audio.mel_windows, as at render time."""
    expert.eval()
    half = expert.cfg.window // 2
    offs = np.arange(-max_offset, max_offset + 1)
    dev = data.mouth.device
    out = []
    for i in range(0, len(frames), 64):
        f = np.asarray(frames[i:i + 64])
        v = expert.embed_video(data.stacks(torch.from_numpy(f).to(dev), half))  # (b, D)
        t = frame_times(data.n, data.fps)
        shifted = np.clip(f[:, None] + offs[None], 0, data.n - 1)
        mel = torch.from_numpy(mel_windows(data.mel_np, t[shifted.reshape(-1)], expert.cfg.mel_window)).to(dev)
        a = expert.embed_audio(mel).reshape(len(f), len(offs), -1)
        out.append(torch.einsum("bd,bkd->bk", v, a).cpu().numpy())
    return np.concatenate(out) if out else np.zeros((0, len(offs)))


def _eval_frames(data: _ClipData, lo: int, hi: int, max_offset: int) -> np.ndarray:
    """Frames in [lo, hi) with a full mouth stack and all shifted audio inside the clip."""
    k = np.arange(max(lo, max_offset), min(hi, data.n - max_offset))
    return k[data.ok[k]]


def offset_accuracy(scores: np.ndarray, max_offset: int) -> tuple[float, float]:
    """Fraction of frames whose best-scoring offset is exactly 0, and within ±1 frame."""
    if len(scores) == 0:
        return float("nan"), float("nan")
    best = scores.argmax(axis=1) - max_offset
    return float((best == 0).mean()), float((np.abs(best) <= 1).mean())


# --- training ------------------------------------------------------------------------

def train_sync_expert(project: Project, cfg: Optional[SyncConfig] = None, progress: ProgressFn = no_progress,
                      cancel: Optional[CancelToken] = None, device: str | torch.device = "cpu",
                      save: bool = True) -> tuple[SyncExpert, dict]:
    """Train the expert on the clip's training split and save it to checkpoints/sync_expert.pt.

    stats: offset_accuracy (held-out, exact offset among ±max_offset), offset_accuracy_pm1,
    chance, train_offset_accuracy, n_eval, steps, seconds, loss.
    """
    cfg = cfg or SyncConfig()
    cancel = ensure_token(cancel)
    dev = torch.device(device)
    if not project.has_audio:
        raise ProjectError(f"{project.root} has no speech track; the sync expert learns from the clip's own "
                           "speech. Prepare a clip with audio.")
    torch.manual_seed(cfg.seed)
    gen = torch.Generator().manual_seed(cfg.seed)
    rng = np.random.default_rng(cfg.seed)
    data = _ClipData(project, cfg, dev)
    half = cfg.window // 2
    # Anchors and every negative shift stay inside the training split: held-out frames stay unseen.
    ok = data.ok[:data.n_train - half]
    run_ok = np.array([ok[s:s + cfg.run_length].all() for s in range(len(ok) - cfg.run_length + 1)], bool)
    starts_ok = np.nonzero(run_ok)[0]
    if len(starts_ok) < 4 * cfg.run_length:
        raise ProjectError(f"{project.root} has too few usable training frames ({int(ok.sum())}) for the sync "
                           "expert; use a clip of at least 5 seconds with a visible face.")
    cfg = replace(cfg, fps=data.fps)
    expert = SyncExpert(cfg).to(dev)
    opt = torch.optim.AdamW(expert.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=cfg.lr, total_steps=cfg.steps, pct_start=0.1)
    b = cfg.runs * cfg.run_length
    run = np.arange(cfg.run_length)
    t0, losses, step = time.time(), [], 0
    deadline = t0 + 60 * cfg.minutes if cfg.minutes else math.inf
    for step in range(1, cfg.steps + 1):
        cancel.raise_if_cancelled()
        expert.train()
        # Runs of consecutive anchors: within a run, the other anchors' audio is the same
        # speech shifted by 1..run_length-1 frames, the negatives that teach timing.
        starts = rng.choice(starts_ok, size=cfg.runs)
        k = torch.from_numpy((starts[:, None] + run[None]).reshape(-1)).to(dev)   # (B,)
        v = expert.embed_video(_augment_mouths(data.stacks(k, half), gen))      # (B, D)
        a = expert.embed_audio(_audio_batch(data, k, cfg.mel_window, True, gen))  # (B, D)
        sim = v @ a.T / cfg.temperature                                     # (B, B) video x audio
        target = torch.arange(b, device=dev)
        loss = 0.5 * (F.cross_entropy(sim, target) + F.cross_entropy(sim.T, target))
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        sched.step()
        losses.append(loss.item())
        if step % 25 == 0 or step == cfg.steps:
            progress(Progress("sync", step, cfg.steps, f"sync expert loss {np.mean(losses[-25:]):.3f}",
                              {"sync_loss": float(np.mean(losses[-25:]))}))
        if time.time() > deadline:
            break
    seconds = time.time() - t0
    expert.freeze()
    stats = evaluate_sync_expert(expert, project, data)
    stats.update(steps=step, seconds=round(seconds, 1), loss=float(np.mean(losses[-25:])))
    if save:
        save_sync_expert(expert, project.sync_expert_path, project.id, stats)
    progress(Progress("sync", cfg.steps, cfg.steps,
                      f"sync expert: held-out offset accuracy {stats['offset_accuracy']:.0%} "
                      f"(chance {stats['chance']:.0%})", dict(stats)))
    return expert, stats


def evaluate_sync_expert(expert: SyncExpert, project: Project, data: Optional[_ClipData] = None) -> dict:
    """Offset accuracy among ±max_offset frames on held-out and (a sample of) training frames."""
    m = expert.cfg.max_offset
    data = data or _ClipData(project, expert.cfg, next(expert.parameters()).device)
    held = _eval_frames(data, data.n_train, data.n, m)
    train = _eval_frames(data, 0, data.n_train, m)[::4]
    scores = offset_scores(expert, data, held, m)
    acc, acc1 = offset_accuracy(scores, m)
    tacc, _ = offset_accuracy(offset_scores(expert, data, train, m), m)
    # The clip-level estimate, as SyncNet reports it: the best offset of the mean score.
    clip = int(scores.mean(0).argmax()) - m if len(scores) else 0
    return {"offset_accuracy": acc, "offset_accuracy_pm1": acc1, "chance": 1.0 / (2 * m + 1),
            "chance_pm1": 3.0 / (2 * m + 1), "train_offset_accuracy": tacc, "clip_offset": clip,
            "n_eval": int(len(held))}


# --- files ---------------------------------------------------------------------------

def save_sync_expert(expert: SyncExpert, path: Path | str, project_id: str = "", stats: Optional[dict] = None) -> None:
    obj = {"format": FORMAT, "version": 1, "config": asdict(expert.cfg), "project_id": project_id,
           "stats": {k: float(v) for k, v in (stats or {}).items()},
           "state_dict": {k: v.detach().cpu() for k, v in expert.state_dict().items()}}
    with atomic_path(path) as tmp:
        torch.save(obj, tmp)


def _wav2lip_like(state: dict) -> bool:
    return any(k.split(".")[0] in ("face_encoder", "audio_encoder") or k.startswith("module.face_encoder")
               for k in state)


def load_sync_expert(path_or_project: Project | Path | str, device: str | torch.device = "cpu") -> SyncExpert:
    """A frozen expert from a project (its checkpoints/sync_expert.pt) or a file."""
    if isinstance(path_or_project, Project):
        path = path_or_project.sync_expert_path
    else:
        path = Path(path_or_project)
        if path.is_dir() and looks_like_project(path):
            path = ProjectFolder(path).sync_expert_path
    if not path.is_file():
        raise CheckpointError(f"No sync expert at {path}; train the clip (the sync stage trains one) "
                              "or leave out --sync-expert.")
    try:
        obj = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:  # unpickling refused, truncated zip, not a torch file
        raise CheckpointError(f"{path} is not a safe, readable sync expert ({e.__class__.__name__}); "
                              "it may be corrupt or carry code. Use a file saved by Speech2Lip Studio.") from None
    if isinstance(obj, dict) and obj.get("format") == FORMAT:
        try:
            fields = {k: tuple(v) if isinstance(v, list) else v for k, v in obj["config"].items()
                      if k in SyncConfig.__dataclass_fields__}
            expert = SyncExpert(SyncConfig(**fields))
            expert.load_state_dict(obj["state_dict"])
        except (KeyError, TypeError, RuntimeError) as e:
            raise CheckpointError(f"{path} is a sync expert from another version, or damaged "
                                  f"({e.__class__.__name__}); delete it and train again.") from None
        return expert.to(device).freeze()
    state = obj.get("state_dict", obj) if isinstance(obj, dict) else {}
    if isinstance(state, dict) and _wav2lip_like(state):
        raise CheckpointError(f"{path} is a Wav2Lip lip-sync expert. It expects 25 fps video, 48x96 lower-half "
                              "faces and Wav2Lip's own 0.2 s mel, not this project's features, so its scores would "
                              "be meaningless here; leave out --sync-expert to train one on your clip.")
    raise CheckpointError(f"{path} is not a Speech2Lip sync expert; leave out --sync-expert to train one.")
