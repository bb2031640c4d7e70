"""The train job: one flat loop over the paper's stages (§4.5).

  lip    LipField (mouth loss, Eq. 7) + Gamem depth (Eq. 9)
  blend  + Blend-Net on the pasted mouth region (face loss, Eq. 8), black-hole augmentation
  sync   the blend stage's step, plus the contrastive sync loss (Eq. 6) on a few 5-frame
         windows, from core.sync when it is present. The paper freezes Blend-Net here
         after 100k steps; with budgets a hundred times shorter Blend-Net has not
         converged by then, and freezing it cost held-out LMD (bench/sync.py)

Stages split the budget (steps, or minutes) by config.train.stage_split. Frames
stream from the project's memory-mapped arrays, so RAM stays flat whatever the
clip length. Everything random draws from generators saved in the checkpoint,
so --resume continues exactly where a run stopped.
"""
from __future__ import annotations

import importlib
import time
from pathlib import Path
from typing import Any, Optional

import numpy as np
import torch
import torch.nn.functional as F

from . import audio as A
from .checkpoint import build_model, latest_path, load_checkpoint, mean_mouth, save_checkpoint
from .config import EngineConfig, preset as make_preset
from .errors import CheckpointError, ProjectError, UserError
from .jobs import Cancelled, CancelToken, Progress, ProgressFn, ensure_token, no_progress
from .losses import Reconstruction, psnr
from .model import continuous_sample, crop_images
from .project import Project, write_json

STAGES = ("lip", "blend", "sync")
LOG_EVERY = 10


def pick_device(name: str = "auto") -> torch.device:
    """cuda > mps > cpu for 'auto'; a named device that is absent is a user error."""
    if name == "auto":
        if torch.cuda.is_available():
            return torch.device("cuda")
        if getattr(torch.backends, "mps", None) is not None and torch.backends.mps.is_available():
            return torch.device("mps")
        return torch.device("cpu")
    if name == "cuda" and not torch.cuda.is_available():
        raise UserError("no CUDA GPU is available; use --device auto or cpu.")
    if name == "mps" and not (getattr(torch.backends, "mps", None) and torch.backends.mps.is_available()):
        raise UserError("Apple MPS is not available here; use --device auto or cpu.")
    if name not in ("cpu", "cuda", "mps"):
        raise UserError(f"unknown device {name!r}; use auto, cpu, cuda or mps.")
    return torch.device(name)


# --- data ---------------------------------------------------------------------------------

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
                                   f"prepare the clip again with --force.")
        self.poses = torch.from_numpy(np.array(project.array("poses"), np.float32)).to(device)
        self.has_face = np.array(project.array("has_face"), bool)
        self.mel = torch.from_numpy(np.array(project.array("mel"), np.float32)).to(device)
        if not np.isfinite(project.array("poses")[self.has_face]).all():
            raise ProjectError(f"{project.root} has invalid head poses; prepare the clip again with --force.")
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
        self.canonical = self.image(np.array([project.manifest.canonical_index]))[0]

    def image(self, idx: np.ndarray) -> torch.Tensor:
        """(B, 3, S, S) float frames"""
        return torch.from_numpy(np.stack([self.frames[i] for i in idx])).to(self.device).permute(0, 3, 1, 2).float() / 255

    def mouths(self, idx: np.ndarray, shape: tuple[int, int]) -> torch.Tensor:
        """(B, 3, h, w) ground-truth canonical mouths, area-resized to `shape`"""
        m = torch.from_numpy(np.stack([self.mouth[i] for i in idx])).to(self.device).permute(0, 3, 1, 2).float() / 255
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


def hole_mask(b: int, h: int, w: int, gen: torch.Generator, device) -> torch.Tensor:
    """(B, 1, h, w) black holes: random blobs plus scattered dropped pixels, in {0, 1}."""
    coarse = torch.rand(b, 1, max(2, h // 12), max(2, w // 12), generator=gen)
    blobs = F.interpolate(coarse, size=(h, w), mode="bicubic", align_corners=False)
    level = 0.25 + 0.5 * torch.rand(b, 1, 1, 1, generator=gen)                  # 10-50 % of the area
    holes = (blobs > 1 - level * 0.6) | (torch.rand(b, 1, h, w, generator=gen) < 0.05)
    return holes.float().to(device)


# --- evaluation and previews -----------------------------------------------------------------

@torch.no_grad()
def heldout_eval(model, data: ClipData, batch: int = 16) -> tuple[float, float]:
    """Held-out frames driven by their own audio, at full box size: (mean mouth PSNR in dB, motion
    correlation). The correlation compares each mouth's departure from the sequence mean, generated
    against real, over all pixels: 0 for a static mouth, 1 for a mouth that moves exactly as filmed."""
    was = model.training
    model.eval()
    h, w = model.mouth_shape(1.0)
    vals, gens, reals = [], [], []
    for s in range(0, len(data.held_idx), batch):
        idx = data.held_idx[s:s + batch]
        gen = render_mouths(model, data.windows(idx), data.times(idx))
        real = data.mouths(idx, (h, w))
        vals += [psnr(g[None], r[None]) for g, r in zip(gen, real)]
        # Half resolution is plenty for a correlation and keeps memory flat on long clips.
        gens.append(F.avg_pool2d(gen, 2).flatten(1).cpu())
        reals.append(F.avg_pool2d(real, 2).flatten(1).cpu())
    model.train(was)
    if not vals:
        return float("nan"), float("nan")
    g, r = torch.cat(gens), torch.cat(reals)
    g, r = g - g.mean(0), r - r.mean(0)
    corr = float((g * r).sum() / ((g * g).sum() * (r * r).sum()).sqrt().clamp(min=1e-12))
    return float(np.mean(vals)), corr


def heldout_psnr(model, data: ClipData) -> float:
    return heldout_eval(model, data)[0]


def static_psnr(data: ClipData) -> float:
    """The static-mouth baseline: the canonical frame's mouth on every held-out frame."""
    h, w = data.mouth.shape[1:3]
    canon = data.mouths(np.array([data.project.manifest.canonical_index]), (h, w))
    vals = [psnr(canon, data.mouths(np.array([i]), (h, w))) for i in data.held_idx]
    return float(np.mean(vals)) if vals else float("nan")


def mean_psnr(data: ClipData) -> float:
    """The mean-mouth baseline: the average training mouth on every held-out frame (a blur scores well)."""
    h, w = data.mouth.shape[1:3]
    mean = torch.from_numpy(mean_mouth(data.project)).permute(2, 0, 1)[None].to(data.device)
    vals = [psnr(mean, data.mouths(np.array([i]), (h, w))) for i in data.held_idx]
    return float(np.mean(vals)) if vals else float("nan")


def render_mouths(model, mel: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
    """(B, 3, h, w) mouths at full box size: the field queried at render_scale, then resized."""
    hs, ws = model.mouth_shape(model.cfg.lip.render_scale)
    h, w = model.mouth_shape(1.0)
    m = model.lip.render(mel, t, hs, ws)
    return m if (hs, ws) == (h, w) else F.interpolate(m, size=(h, w), mode="bilinear", align_corners=False)


@torch.no_grad()
def preview(model, data: ClipData, i: int) -> dict[str, np.ndarray]:
    """Real vs generated mouth side by side, and the blended working frame, as uint8 images."""
    was = model.training
    model.eval()
    idx = np.array([i])
    gen = render_mouths(model, data.windows(idx), data.times(idx))
    real = data.mouths(idx, gen.shape[-2:])
    frame = data.image(idx)
    out, _, _, origins = model.blend_into(gen, frame, data.poses[idx])
    full = frame.clone()
    ox, oy = (int(v) for v in origins[0])
    full[:, :, oy:oy + model.region[0], ox:ox + model.region[1]] = out
    to8 = lambda x: (x[0].permute(1, 2, 0).clamp(0, 1) * 255).round().byte().cpu().numpy()
    gap = np.full((gen.shape[-2], 4, 3), 255, np.uint8)
    model.train(was)
    return {"mouth": np.concatenate([to8(real), gap, to8(gen)], axis=1), "frame": to8(full)}


# --- the job ------------------------------------------------------------------------------------

def _sync_module():
    """core.sync when it provides the contrastive loss; the engine runs without it."""
    try:
        mod = importlib.import_module(f"{__package__}.sync")
    except ImportError:
        return None
    return mod if hasattr(mod, "contrastive_sync_loss") and hasattr(mod, "train_sync_expert") else None


class Budget:
    """Where the run stands in its budget (steps or minutes) and which stage that means."""

    def __init__(self, cfg: EngineConfig, steps: Optional[int], minutes: Optional[float], with_sync: bool) -> None:
        self.steps = steps if steps is not None else (None if minutes is not None else cfg.train.steps)
        self.seconds = minutes * 60.0 if minutes is not None else None
        split = list(cfg.train.stage_split)
        if not with_sync:           # no sync stage: Blend-Net gets its share
            split = [split[0], split[1] + split[2], 0.0]
        self.bounds = np.cumsum(split) / max(1e-9, sum(split))

    def fraction(self, step: int, elapsed: float) -> float:
        f = [step / self.steps] if self.steps else []
        if self.seconds:
            f.append(elapsed / self.seconds)
        return max(f)

    def stage(self, step: int, elapsed: float) -> str:
        f = self.fraction(step, elapsed)
        return STAGES[int(np.searchsorted(self.bounds[:2], f, side="right"))]

    def done(self, step: int, elapsed: float) -> bool:
        return self.fraction(step, elapsed) >= 1.0


def train(project_dir: Path | str, preset: Optional[str] = "quick", steps: Optional[int] = None,
          minutes: Optional[float] = None, device: str = "auto", resume: bool = False,
          progress: ProgressFn = no_progress, cancel: Optional[CancelToken] = None,
          config: Optional[EngineConfig] = None, sync_expert: Optional[Path | str] = None) -> dict[str, Any]:
    """Train the project's model; returns final figures (held-out mouth PSNR, baseline, steps, ...).

    preset: 'quick' or 'standard' (config overrides it; None: quick, or on resume the saved run's);
    steps/minutes: the budget (both: whichever ends first); resume: continue from
    checkpoints/latest.pt at its exact step, with the settings saved in it; sync_expert: a
    pretrained expert file for the sync stage instead of training one on the clip.
    """
    cancel = ensure_token(cancel)
    project = Project(project_dir)
    sync_expert = Path(sync_expert) if sync_expert is not None else None
    if steps is not None and steps < 1 or minutes is not None and minutes <= 0:
        raise UserError("the training budget must be positive (--steps N or --minutes M).")
    cfg = config or make_preset(preset or "quick")
    dev = pick_device(device)
    ckpt = None
    if resume and latest_path(project).is_file():
        ckpt = load_checkpoint(latest_path(project), project, config, map_location=dev)
        if config is None:
            if preset is not None and ckpt["config"].preset != preset:
                raise CheckpointError(f"the interrupted training of {project.root} used the "
                                      f"{ckpt['config'].preset!r} preset; resume it with that preset, "
                                      f"or start a new training with {preset!r}.")
            cfg = ckpt["config"]        # resume rebuilds what was saved, whatever the preset's defaults now
    torch.manual_seed(cfg.train.seed)
    data = ClipData(project, cfg, dev)
    model = build_model(cfg, project).to(dev)
    lip_params = list(model.lip.parameters())
    opt = torch.optim.Adam([
        {"params": lip_params, "lr": cfg.train.lr},
        {"params": list(model.blend.parameters()), "lr": cfg.train.lr},
        {"params": [model.gamem.depth], "lr": cfg.gamem.depth_lr},
    ])
    use_amp = cfg.train.amp and dev.type == "cuda"
    scaler = torch.amp.GradScaler("cuda", enabled=use_amp)
    gen = torch.Generator().manual_seed(cfg.train.seed)
    step, elapsed, history = 0, 0.0, []

    if ckpt is not None:
        model.load_state_dict(ckpt["model"])
        opt.load_state_dict(ckpt["optimizer"])
        scaler.load_state_dict(ckpt.get("scaler", {}))
        step, elapsed, history = int(ckpt["step"]), float(ckpt["elapsed_s"]), list(ckpt["history"])
        gen.set_state(ckpt["rng"]["sampler"])
        torch.set_rng_state(ckpt["rng"]["torch"])
        if dev.type == "cuda" and "cuda" in ckpt["rng"]:
            torch.cuda.set_rng_state(ckpt["rng"]["cuda"])
        progress(Progress("resume", step, 0, f"resumed at step {step}"))

    # The sync stage needs core.sync, and either permission to train an expert on the clip or one at hand.
    have_expert = sync_expert is not None or (project.checkpoints / "sync_expert.pt").is_file()
    sync = _sync_module() if (cfg.train.sync or have_expert) and cfg.train.w_sync > 0 \
        and len(data.sync_idx) > 0 and project.has_audio else None
    budget = Budget(cfg, steps, minutes, with_sync=sync is not None)
    recon = Reconstruction(cfg.train.w_struct, cfg.train.w_lpips, device=dev)
    train_shape = model.mouth_shape(cfg.lip.scale)
    preview_idx = int(data.held_idx[len(data.held_idx) // 2]) if len(data.held_idx) else int(data.train_idx[0])
    static, mean_base = static_psnr(data), mean_psnr(data)
    first_psnr, first_corr = heldout_eval(model, data) if step == 0 else (None, None)
    if first_psnr is not None:
        history.append({"step": 0, "heldout_psnr": first_psnr, "heldout_corr": first_corr,
                        "static_psnr": static, "mean_psnr": mean_base})
    expert = None
    window: list[dict[str, float]] = []

    def state() -> dict[str, Any]:
        rng = {"sampler": gen.get_state(), "torch": torch.get_rng_state()}
        if dev.type == "cuda":
            rng["cuda"] = torch.cuda.get_rng_state()
        return {"config": cfg, "step": step, "stage": budget.stage(step, elapsed), "elapsed_s": elapsed,
                "model": model.state_dict(), "optimizer": opt.state_dict(), "scaler": scaler.state_dict(),
                "rng": rng, "history": history}

    def checkpoint() -> None:
        save_checkpoint(project, state())
        write_json(project.checkpoints / "history.json", {"config": cfg.to_dict(), "history": history})

    model.train()
    t_start = time.perf_counter() - elapsed
    while not budget.done(step, elapsed):
        if cancel.cancelled:
            checkpoint()
            raise Cancelled()
        stage = budget.stage(step, elapsed)
        if stage == "sync" and expert is None:
            # A minutes budget also bounds training the expert: it gets a share of the total.
            minutes_cap = 0.1 * budget.seconds / 60 if budget.seconds else None
            expert = _load_expert(sync, project, dev, progress, cancel, sync_expert, minutes_cap)
        with torch.autocast(dev.type, dtype=torch.float16, enabled=use_amp):
            loss, parts = _step_loss(model, data, cfg, stage, recon, gen, train_shape, sync, expert, step)
        opt.zero_grad(set_to_none=True)
        scaler.scale(loss).backward()
        scaler.step(opt)
        scaler.update()
        step += 1
        elapsed = time.perf_counter() - t_start
        parts["loss"] = float(loss.detach())
        window.append(parts)
        data_out: dict[str, Any] = {"losses": parts, "stage": stage}
        if step % LOG_EVERY == 0:
            history.append({"step": step, "stage": stage, "t": round(elapsed, 2),
                            **{k: float(np.mean([w[k] for w in window if k in w])) for k in parts}})
            window = []
        if step % cfg.train.eval_every == 0:
            p_, c_ = heldout_eval(model, data)
            history.append({"step": step, "heldout_psnr": p_, "heldout_corr": c_})
            data_out.update(heldout_psnr=p_, heldout_corr=c_)
        if step % cfg.train.preview_every == 0 or step == 1:
            data_out["preview"] = preview(model, data, preview_idx)
        # Steps done of the step budget; under a minutes budget the total is estimated from the clock.
        f = budget.fraction(step, elapsed)
        steps_bound = budget.steps and step / budget.steps >= f
        total = budget.steps if steps_bound else max(step, round(step / max(f, 1e-9)))
        data_out.update(step=step, loss=parts["loss"])           # numbers the CLI bar shows
        progress(Progress("train", step, total, f"step {step}, {stage} stage, loss {parts['loss']:.4f}", data_out))
        if step % cfg.train.checkpoint_every == 0:
            checkpoint()

    final_psnr, final_corr = heldout_eval(model, data)
    history.append({"step": step, "heldout_psnr": final_psnr, "heldout_corr": final_corr})
    checkpoint()
    losses = [h["loss"] for h in history if "loss" in h][-5:]
    result = {"steps": step, "seconds": round(elapsed, 1), "device": str(dev), "preset": cfg.preset,
              "heldout_mouth_psnr": final_psnr, "static_mouth_psnr": static, "mean_mouth_psnr": mean_base,
              "initial_heldout_mouth_psnr": first_psnr if first_psnr is not None else history[0].get("heldout_psnr"),
              "heldout_motion_corr": final_corr,
              "initial_heldout_motion_corr": first_corr if first_corr is not None else history[0].get("heldout_corr"),
              "train_loss": float(np.mean(losses)) if losses else float("nan"),
              "sync_stage": sync is not None, "checkpoint": str(latest_path(project))}
    progress(Progress("done", step, step, f"held-out mouth PSNR {final_psnr:.2f} dB "
                      f"(static mouth {static:.2f} dB)", {"result": result}))
    return result


def _load_expert(sync, project: Project, dev: torch.device, progress: ProgressFn, cancel: CancelToken,
                 path: Optional[Path] = None, minutes: Optional[float] = None):
    """The frozen sync expert: a given file, the project's saved one, or one trained now on the clip."""
    saved = project.checkpoints / "sync_expert.pt"
    if path is not None:
        return sync.load_sync_expert(path, device=dev)
    if saved.is_file():
        try:
            return sync.load_sync_expert(saved, device=dev)
        except CheckpointError:
            progress(Progress("sync", 0, 0, "the saved sync expert is unreadable; training a new one"))
    scfg = sync.SyncConfig(minutes=minutes) if minutes else None
    expert, _ = sync.train_sync_expert(project, scfg, progress=progress, cancel=cancel, device=dev)
    return expert.freeze()


def _step_loss(model, data: ClipData, cfg: EngineConfig, stage: str, recon: Reconstruction,
               gen: torch.Generator, shape: tuple[int, int], sync, expert, step: int):
    """The loss of one step in `stage`; returns (loss, dict of its parts as floats)."""
    tc = cfg.train
    parts: dict[str, float] = {}
    idx = data.train_idx[torch.randint(len(data.train_idx), (tc.batch,), generator=gen).numpy()]
    mel = data.windows(idx, gen)
    fake = _render_mouths(model, data, cfg, mel, idx, gen, shape)
    real = data.mouths(idx, shape)
    loss_mouth, p = recon(fake, real)
    parts.update({f"mouth_{k}": v for k, v in p.items()})
    loss = tc.w_mouth * loss_mouth

    # Eq. 9 on a few other frames: the depth outside the face explains the observed motion.
    didx = data.train_idx[torch.randint(len(data.train_idx), (cfg.gamem.depth_batch,), generator=gen).numpy()]
    loss_depth = model.gamem.depth_loss(data.image(didx), data.poses[didx], data.canonical, offset=step)
    parts["depth"] = float(loss_depth.detach())
    loss = loss + tc.w_depth * loss_depth

    if stage in ("blend", "sync"):
        nb = min(len(idx), cfg.blend.batch)
        poses = data.poses[idx[:nb]]
        origins = model.region_origin(poses)
        region = crop_images(data.image(idx[:nb]), origins, model.region)
        comp, m = model.paste(fake[:nb], poses, origins, region)
        holes = torch.zeros_like(m)
        if torch.rand(1, generator=gen).item() < cfg.blend.hole_prob:
            holes = hole_mask(nb, *model.region, gen, comp.device)
            comp = comp * (1 - holes)
        out = model.blend(comp, holes, m)
        loss_face, p = recon(out, region)
        parts.update({f"face_{k}": v for k, v in p.items()})
        loss = loss + tc.w_face * loss_face
    if stage == "sync":
        loss_sync = _sync_term(model, data, cfg, gen, shape, sync, expert)
        parts["sync"] = float(loss_sync.detach())
        loss = loss + tc.w_sync * loss_sync
    return loss, parts


def _render_mouths(model, data: ClipData, cfg: EngineConfig, mel: torch.Tensor, idx: np.ndarray,
                   gen: torch.Generator, shape: tuple[int, int]) -> torch.Tensor:
    """(B, 3, h, w) generated canonical mouths of frames idx (continuous sampling when configured)."""
    t = data.times(idx, gen)
    cond = model.lip.condition(mel, t)
    if cfg.train.continuous_sampling:
        query = lambda x: model.lip.decode(model.lip.embed(x), cond, model.lip.base(x))
        return continuous_sample(query, len(idx), *shape, device=cond.device, generator=gen)
    return model.lip.render(mel, t, *shape)


def _sync_term(model, data: ClipData, cfg: EngineConfig, gen: torch.Generator, shape: tuple[int, int],
               sync, expert) -> torch.Tensor:
    """Eq. 6 on a few windows of 5 consecutive generated mouths against their audio and unsynced audio."""
    tc = cfg.train
    nb = max(2, tc.batch // 4)
    centre = data.sync_idx[torch.randint(len(data.sync_idx), (nb,), generator=gen).numpy()]
    idx = (centre[:, None] + np.arange(-2, 3)[None]).reshape(-1)                   # (nb * 5,)
    mel = data.windows(idx, gen)
    gen5 = _render_mouths(model, data, cfg, mel, idx, gen, shape)
    gen5 = gen5.view(nb, 5, *gen5.shape[1:])                                       # (nb, 5, 3, h, w)
    mel_pos = mel.view(nb, 5, *mel.shape[1:])[:, 2]                                # (nb, window, mels)
    neg = _negatives(data, centre, tc.sync_negatives, gen)                         # (nb, K)
    mel_neg = data.windows(neg.reshape(-1), gen).view(nb, tc.sync_negatives, *mel.shape[1:])
    return sync.contrastive_sync_loss(expert, gen5, mel_pos, mel_neg)


def _negatives(data: ClipData, centre: np.ndarray, k: int, gen: torch.Generator) -> np.ndarray:
    """(B, k) training frames at least 5 frames away from each centre: unsynced audio for Eq. 6."""
    out = np.empty((len(centre), k), np.int64)
    pool = data.train_idx
    for b, c in enumerate(centre):
        far = pool[np.abs(pool - c) >= 5]
        out[b] = far[torch.randint(len(far), (k,), generator=gen).numpy()]
    return out
