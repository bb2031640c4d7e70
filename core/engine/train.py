"""The train job: one flat loop over the paper's stages (§4.5).

  lip    LipField (mouth loss, Eq. 7) + Gamem depth (Eq. 9)
  blend  + Blend-Net on the pasted mouth region (face loss, Eq. 8), black-hole augmentation
  sync   the blend stage's step, plus the contrastive sync loss (Eq. 6) on a few 5-frame
         windows, from core.engine.sync_expert when it is present. The paper freezes Blend-Net here
         after 100k steps; with budgets a hundred times shorter Blend-Net has not
         converged by then, and freezing it cost held-out LMD (bench/sync_ablation.py)

Stages split the budget (steps, or minutes) by config.train.stage_split. The data
(core.engine.data), the devices (core.device, core.engine.distributed) and the held-out figures
(core.engine.train_eval) live beside this loop. Everything random draws from generators saved
in the checkpoint, so --resume continues exactly where a run stopped.
"""
from __future__ import annotations

import math
import time
from contextlib import nullcontext
from dataclasses import replace
from pathlib import Path
from typing import Any, Optional

import numpy as np
import torch

from . import distributed as D
from . import sync_expert as expert_sync      # the training sync expert (Eq. 6)
from .checkpoint import (build_model, check_resume_budget, check_run_choice, keep_aside, latest_path, load_checkpoint, save_checkpoint)
from ..config import EngineConfig, preset as make_preset
from .data import ClipData, hole_mask
from .detail import PatchCritic, adversarial_loss, critic_loss, exclusion_window
from .ema import WeightAverage
from ..device import amp_dtype, autocast, pick_device, tune  # noqa: F401  (pick_device: its old home)
from ..errors import CheckpointError, UserError
from ..jobs import Cancelled, CancelToken, Progress, ProgressFn, ensure_token, no_progress
from .losses import Reconstruction
from .model import continuous_sample, crop_images
from ..project import Project, write_json
from .train_eval import heldout_eval, heldout_psnr, mean_psnr, preview, render_mouths, static_psnr  # noqa: F401

STAGES = ("lip", "blend", "sync")
LOG_EVERY = 10
CHECKPOINT_SECONDS = 300.0      # also save every 5 minutes of wall time: a kill loses little whatever the step rate


# --- the job ------------------------------------------------------------------------------------

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
          config: Optional[EngineConfig] = None, sync_expert: Optional[Path | str] = None,
          new_run: bool = False) -> dict[str, Any]:
    """Train the project's model; returns final figures (held-out mouth PSNR, baseline, steps, ...).

    preset: 'quick' or 'standard' (config overrides it; None: quick, or on resume the saved run's);
    steps/minutes: the budget (both: whichever ends first); resume: continue from
    checkpoints/latest.pt at its exact step, with the settings saved in it; sync_expert: a
    pretrained expert file for the sync stage instead of training one on the clip; new_run: over a
    trained project, keep the previous run in checkpoints/run-N/ and start again (without it or
    resume, a trained project is refused: a slip of the keyboard must not replace hours of training).
    Under torchrun each process calls this; see core.engine.distributed for what the budget means then.
    """
    cancel = ensure_token(cancel)
    project = Project(project_dir)
    sync_expert = Path(sync_expert) if sync_expert is not None else None
    if steps is not None and steps < 1 or minutes is not None and not (minutes > 0 and math.isfinite(minutes)):
        raise UserError("the training budget must be positive (--steps N or --minutes M).")
    ranks, dev = D.setup(device)
    if not ranks.main:
        progress = no_progress          # rank 0 speaks and writes for the run
    if ranks.main:                      # the others follow rank 0, which may move latest.pt aside
        check_run_choice(project, resume, new_run)
    if sync_expert is not None and not sync_expert.is_file():
        raise UserError(f"no sync expert at {sync_expert}; check the path, or leave out --sync-expert.")
    cfg = config or make_preset(preset or "quick")
    ckpt = None
    if resume:
        ckpt = load_checkpoint(latest_path(project), project, config, map_location=dev)
        check_resume_budget(project, int(ckpt["step"]), float(ckpt["elapsed_s"]), steps, minutes,
                             ckpt["config"] if config is None else cfg)
        if config is None:
            if preset is not None and ckpt["config"].preset != preset:
                raise CheckpointError(f"the interrupted training of {project.root} used the "
                                      f"{ckpt['config'].preset!r} preset; resume it with that preset, "
                                      f"or start a new training with {preset!r}.")
            cfg = ckpt["config"]        # resume rebuilds what was saved, whatever the preset's defaults now
    tune(dev)
    torch.manual_seed(cfg.train.seed)   # the same initial weights on every rank
    data = ClipData(project, cfg, dev)
    model = build_model(cfg, project).to(dev)
    lip_params = list(model.lip.parameters())
    groups = [
        {"params": lip_params, "lr": cfg.train.lr},
        {"params": list(model.blend.parameters()), "lr": cfg.train.lr},
        {"params": [model.gamem.depth], "lr": cfg.gamem.depth_lr},
    ]
    if model.detail is not None:
        groups.append({"params": list(model.detail.parameters()), "lr": cfg.train.lr})
    opt = torch.optim.Adam(groups)
    # The patch critic trains beside the model, with its own optimiser, only when its term is weighted.
    critic = PatchCritic(cfg.detail.critic_channels).to(dev) if model.detail is not None and cfg.detail.w_adv > 0 \
        else None
    critic_opt = torch.optim.Adam(critic.parameters(), lr=cfg.detail.critic_lr, betas=(0.5, 0.999)) \
        if critic is not None else None
    amp = amp_dtype(dev, cfg.train.amp)
    scaler = torch.amp.GradScaler("cuda", enabled=amp == torch.float16)     # bf16 needs none
    # Each rank draws its own frames; rank 0's stream is the single-process one, so a resume on
    # one process continues it.
    gen = torch.Generator().manual_seed(cfg.train.seed + ranks.rank)
    step, elapsed, history = 0, 0.0, []

    if ckpt is not None:
        model.load_state_dict(ckpt["model"])
        opt.load_state_dict(ckpt["optimizer"])
        if critic is not None and "critic" in ckpt:
            critic.load_state_dict(ckpt["critic"])
            critic_opt.load_state_dict(ckpt["critic_optimizer"])
        if scaler.is_enabled() and ckpt.get("scaler"):     # a CPU or bf16 run saved a disabled scaler
            scaler.load_state_dict(ckpt["scaler"])
        step, elapsed, history = int(ckpt["step"]), float(ckpt["elapsed_s"]), list(ckpt["history"])
        # map_location put every tensor on `dev`; RNG states must be CPU ByteTensors whatever the device.
        gen.set_state(ckpt["rng"]["sampler"].cpu())
        torch.set_rng_state(ckpt["rng"]["torch"].cpu())
        if dev.type == "cuda" and "cuda" in ckpt["rng"]:
            torch.cuda.set_rng_state(ckpt["rng"]["cuda"].cpu())
        progress(Progress("resume", step, 0, f"resumed at step {step}"))
    # The weight average renders and is what held-out figures and previews show.
    ema = WeightAverage(model, cfg.train.ema) if cfg.train.ema > 0 else None
    if ema is not None and ckpt is not None and ckpt.get("ema"):
        ema.load_state_dict(ckpt["ema"])
    averaged = (lambda: ema.applied(model)) if ema is not None else nullcontext
    if not ranks.main:
        gen.manual_seed(cfg.train.seed + ranks.rank + 7919 * step)
        torch.manual_seed(cfg.train.seed + ranks.rank + 7919 * step)   # its own dropout masks

    # The sync stage needs core.engine.sync_expert, and either permission to train an expert on the clip or one at hand.
    have_expert = sync_expert is not None or project.sync_expert_path.is_file()
    sync = expert_sync if (cfg.train.sync or have_expert) and cfg.train.w_sync > 0 \
        and len(data.sync_idx) > 0 and project.has_audio else None
    budget = Budget(cfg, steps, minutes, with_sync=sync is not None)
    recon = Reconstruction(cfg.train.w_struct, cfg.train.w_lpips, device=dev)
    train_shape = model.mouth_shape(cfg.lip.scale)
    preview_idx = int(data.held_idx[len(data.held_idx) // 2]) if len(data.held_idx) else int(data.train_idx[0])
    static, mean_base = (static_psnr(data), mean_psnr(data)) if ranks.main else (math.nan, math.nan)
    first_psnr, first_corr = heldout_eval(model, data) if step == 0 and ranks.main else (None, None)
    if first_psnr is not None:
        history.append({"step": 0, "heldout_psnr": first_psnr, "heldout_corr": first_corr,
                        "static_psnr": static, "mean_psnr": mean_base})
    # A given expert file is read now, not at the sync stage, so a bad one fails before the first step.
    expert = sync.load_sync_expert(sync_expert, device=dev) if sync is not None and sync_expert is not None \
        else None
    window: list[dict[str, Any]] = []
    # On the CPU a loss is a number as soon as it is computed; on a GPU reading one stalls the
    # queue, so there the losses stay tensors and are read every LOG_EVERY steps.
    eager = _eager_losses(dev)
    step_cfg = D.per_rank(cfg, ranks.world)
    run_step = D.stepper(model, lambda m, *a: _step_loss(m, *a), ranks, dev)
    if cfg.train.compile and dev.type == "cuda":
        _compile(model)
    last: dict[str, float] = {}
    clock, halved = elapsed, False      # clock: the elapsed time every rank agrees on

    def state() -> dict[str, Any]:
        rng = {"sampler": gen.get_state(), "torch": torch.get_rng_state()}
        if dev.type == "cuda":
            rng["cuda"] = torch.cuda.get_rng_state()
        out = {"config": cfg, "step": step, "stage": budget.stage(step, clock), "elapsed_s": elapsed,
               "model": model.state_dict(), "optimizer": opt.state_dict(), "scaler": scaler.state_dict(),
               "rng": rng, "history": history}
        if critic is not None:
            out.update(critic=critic.state_dict(), critic_optimizer=critic_opt.state_dict())
        if ema is not None:
            out["ema"] = ema.state_dict()
        return out

    saved_at = [time.perf_counter()]

    def checkpoint() -> None:
        if ranks.main:
            save_checkpoint(project, state())
            write_json(project.history_path, {"config": cfg.to_dict(), "history": history})
        saved_at[0] = time.perf_counter()

    def stopped() -> Cancelled:
        checkpoint()
        return Cancelled(f"step {step} was saved in {latest_path(project)}; continue with "
                         f"`speech2lip train --project {project.root} --resume`.")

    kept = keep_aside(project) if new_run and ranks.main else None
    if kept is not None:
        progress(Progress("new_run", 0, 0, f"the previous run was kept in {kept}"))
    model.train()
    t_start = time.perf_counter() - elapsed
    while not budget.done(step, clock):
        if cancel.cancelled and not ranks.active:       # several ranks agree on stopping at log steps
            raise stopped()
        stage = budget.stage(step, clock)
        if stage == "sync" and expert is None:
            # A minutes budget also bounds training the expert: it gets a share of the total.
            minutes_cap = 0.1 * budget.seconds / 60 if budget.seconds else None
            try:
                expert = _load_expert(sync, project, dev, progress, cancel, sync_expert, minutes_cap, ranks)
            except Cancelled:
                raise stopped() from None
            except BaseException:
                checkpoint()            # a late failure keeps the steps trained so far
                raise
        adv = critic if critic is not None and budget.fraction(step, clock) >= cfg.detail.adv_start else None
        try:
            with autocast(dev, amp):
                loss, parts, pair = run_step(data, step_cfg, stage, recon, gen, train_shape, sync, expert, step,
                                             adv)
            opt.zero_grad(set_to_none=True)
            scaler.scale(loss).backward()
            scaler.step(opt)
            scaler.update()
            if ema is not None:
                ema.update(model)
        except torch.cuda.OutOfMemoryError:
            # Once: retry the step with half the batch. Twice: keep what is trained and say what to lower.
            loss = parts = pair = None
            opt.zero_grad(set_to_none=True)
            if dev.type == "cuda":
                torch.cuda.empty_cache()
            if halved or ranks.active or step_cfg.train.batch < 2:
                checkpoint()
                raise UserError(f"the GPU ran out of memory at step {step} with {step_cfg.train.batch} frames per "
                                f"step; step {step} is saved. Lower the batch (train.batch, now {cfg.train.batch}), "
                                f"use the quick preset, or free the GPU, then --resume.") from None
            halved = True
            step_cfg = replace(step_cfg, train=replace(step_cfg.train, batch=step_cfg.train.batch // 2))
            progress(Progress("oom", step, 0, f"the GPU ran out of memory; halving the batch to "
                                              f"{step_cfg.train.batch} frames per step and going on"))
            continue
        if adv is not None and pair is not None:
            # The critic's own step, on the mouths this step generated (detached) and their real frames.
            with autocast(dev, amp):
                loss_c = critic_loss(critic, pair[1], pair[0])
            critic_opt.zero_grad(set_to_none=True)
            loss_c.backward()
            D.average_grads(critic.parameters(), ranks)
            critic_opt.step()
            parts["critic"] = loss_c.detach()
        step += 1
        elapsed = time.perf_counter() - t_start
        parts["loss"] = loss.detach()
        if eager:
            parts = {k: float(v) for k, v in parts.items()}
        window.append(parts)
        data_out: dict[str, Any] = {"stage": stage}
        if eager:
            data_out["losses"] = last = parts
        if step % LOG_EVERY == 0:
            means = _log_means(window, list(parts), dev, ranks)     # the one host sync of the window
            history.append({"step": step, "stage": stage, "t": round(elapsed, 2), **means})
            window = []
            if not eager:
                data_out["losses"] = last = means
            if ranks.active:
                clock, stop = _agree(elapsed, cancel.cancelled, dev, ranks)
                if stop:
                    raise stopped()
        if not ranks.active:
            clock = elapsed
        if ranks.main and step % cfg.train.eval_every == 0:
            with averaged():
                p_, c_ = heldout_eval(model, data)
            history.append({"step": step, "heldout_psnr": p_, "heldout_corr": c_})
            data_out.update(heldout_psnr=p_, heldout_corr=c_)
        if ranks.main and (step % cfg.train.preview_every == 0 or step == 1):
            with averaged():
                data_out["preview"] = preview(model, data, preview_idx)
        if not last:                    # the first steps on a GPU: one read, for the bar
            last = {"loss": float(parts["loss"])}
        # Steps done of the step budget; under a minutes budget the total is estimated from the clock.
        f = budget.fraction(step, clock)
        steps_bound = budget.steps and step / budget.steps >= f
        total = budget.steps if steps_bound else max(step, round(step / max(f, 1e-9)))
        data_out.update(step=step, loss=last["loss"])           # numbers the CLI bar shows
        progress(Progress("train", step, total, f"step {step}, {stage} stage, loss {last['loss']:.4f}", data_out))
        if step % cfg.train.checkpoint_every == 0 or time.perf_counter() - saved_at[0] >= CHECKPOINT_SECONDS:
            checkpoint()

    digest = D.check_same_weights(model, ranks)
    with averaged():
        final_psnr, final_corr = heldout_eval(model, data) if ranks.main else (math.nan, math.nan)
    history.append({"step": step, "heldout_psnr": final_psnr, "heldout_corr": final_corr})
    checkpoint()
    losses = [h["loss"] for h in history if "loss" in h][-5:]
    result = {"steps": step, "seconds": round(elapsed, 1), "device": str(dev), "preset": cfg.preset,
              "heldout_mouth_psnr": final_psnr, "static_mouth_psnr": static, "mean_mouth_psnr": mean_base,
              "initial_heldout_mouth_psnr": first_psnr if first_psnr is not None else
              (history[0].get("heldout_psnr") if history else math.nan),
              "heldout_motion_corr": final_corr,
              "initial_heldout_motion_corr": first_corr if first_corr is not None else
              (history[0].get("heldout_corr") if history else math.nan),
              "train_loss": float(np.mean(losses)) if losses else float("nan"),
              "sync_stage": sync is not None, "checkpoint": str(latest_path(project)),
              "previous_run": str(kept) if kept is not None else None,
              "processes": ranks.world, "rank": ranks.rank, "batch": step_cfg.train.batch * ranks.world,
              "weights_digest": digest}
    progress(Progress("done", step, step, f"held-out mouth PSNR {final_psnr:.2f} dB "
                      f"(static mouth {static:.2f} dB)", {"result": result}))
    return result


def _eager_losses(dev: torch.device) -> bool:
    """Read each step's losses as numbers (free on the CPU), or only every LOG_EVERY steps."""
    return dev.type == "cpu"


def _log_means(window: list[dict[str, Any]], keys: list[str], dev: torch.device, ranks) -> dict[str, float]:
    """Each loss part's mean over the window (over the ranks too): one read from the device."""
    host = [k for k in keys if not isinstance(window[-1][k], torch.Tensor)]
    lazy = [k for k in keys if k not in host]
    vals = [float(np.mean([w[k] for w in window if k in w])) for k in host]
    wide = torch.float32 if dev.type == "mps" else torch.float64
    on_dev = torch.stack([torch.stack([w[k].to(wide) for w in window if k in w]).mean() for k in lazy]) \
        if lazy else torch.zeros(0, dtype=wide, device=dev)
    if ranks.active:
        vals = D.all_mean(torch.cat([torch.tensor(vals, dtype=wide).to(dev), on_dev]), ranks).tolist()
    else:
        vals = vals + on_dev.tolist()
    out = dict(zip(host + lazy, vals))
    return {k: out[k] for k in keys}


def _agree(elapsed: float, cancelled: bool, dev: torch.device, ranks) -> tuple[float, bool]:
    """Rank 0's clock, and whether any rank was asked to stop: budget and stage decisions match."""
    x = torch.tensor([elapsed if ranks.main else 0.0, float(cancelled)], dtype=torch.float64).to(dev)
    clock, stop = D.all_max(x, ranks).tolist()
    return clock, stop > 0


def _compile(model) -> None:
    """torch.compile the lip field, the hot path (config train.compile, off by default); any
    compiler failure falls back to eager kernels instead of stopping the run."""
    import torch._dynamo

    torch._dynamo.config.suppress_errors = True
    try:
        model.lip.compile()
    except Exception:               # noqa: BLE001 - compiling is an optimisation, never a requirement
        pass



def _load_expert(sync, project: Project, dev: torch.device, progress: ProgressFn, cancel: CancelToken,
                 path: Optional[Path] = None, minutes: Optional[float] = None, ranks: D.Ranks = D.Ranks()):
    """The frozen sync expert: a given file, the project's saved one, or one trained now on the clip
    (by rank 0 alone, which saves it for the others)."""
    saved = project.sync_expert_path
    if path is not None:
        return sync.load_sync_expert(path, device=dev)
    if ranks.active:
        if ranks.main:
            _load_expert(sync, project, dev, progress, cancel, None, minutes)
        torch.distributed.barrier()
        return sync.load_sync_expert(saved, device=dev)
    if saved.is_file():
        try:
            return sync.load_sync_expert(saved, device=dev)
        except CheckpointError:
            progress(Progress("sync", 0, 0, "the saved sync expert is unreadable; training a new one"))
    scfg = sync.SyncConfig(minutes=minutes) if minutes else None
    expert, _ = sync.train_sync_expert(project, scfg, progress=progress, cancel=cancel, device=dev)
    return expert.freeze()


def _step_loss(model, data: ClipData, cfg: EngineConfig, stage: str, recon: Reconstruction,
               gen: torch.Generator, shape: tuple[int, int], sync, expert, step: int, critic=None):
    """The loss of one step in `stage`; returns (loss, dict of its parts as floats, and the
    (generated, real) full-box mouths for the critic's step, or None)."""
    tc = cfg.train
    parts: dict[str, float] = {}
    idx = data.draw(tc.batch, gen)
    mel = data.windows(idx, gen)
    audio = model.lip.audio(mel)
    fake = _render_mouths(model, data, cfg, mel, idx, gen, shape, audio)
    real = data.mouths(idx, shape)
    loss_mouth, p = recon(fake, real)
    parts.update({f"mouth_{k}": v for k, v in p.items()})
    loss = tc.w_mouth * loss_mouth
    if model.lip.shape_head is not None and tc.w_shape > 0 and data.lip_shape is not None:
        loss_shape = data.shape_loss(model.lip.shape_head(audio), idx)
        parts["shape"] = loss_shape.detach()
        loss = loss + tc.w_shape * loss_shape
    pasted, pair = fake, None
    if model.detail is not None:
        # DetailNet on the lip field's mouths (their gradient stays the lip field's own), at full box size.
        nd = min(len(idx), cfg.detail.batch)
        window = exclusion_window(cfg.detail, data.fps)
        sharp = model.refine(fake[:nd].detach(), mel[:nd], torch.as_tensor(idx[:nd], device=fake.device), window)
        real_full = data.mouths(idx[:nd], model.mouth_shape(1.0))
        loss_detail, p = recon(sharp, real_full)
        parts.update({f"detail_{k}": v for k, v in p.items()})
        loss = loss + cfg.detail.w_detail * loss_detail
        if critic is not None:
            loss_adv = adversarial_loss(critic, sharp)
            parts["adv"] = loss_adv.detach()
            loss = loss + cfg.detail.w_adv * loss_adv
            pair = (sharp.detach(), real_full)
        pasted = sharp

    # Eq. 9 on a few other frames: the depth outside the face explains the observed motion.
    didx = data.train_idx[torch.randint(len(data.train_idx), (cfg.gamem.depth_batch,), generator=gen).numpy()]
    loss_depth = model.gamem.depth_loss(data.image(didx), data.poses[didx], data.canonical, offset=step)
    parts["depth"] = loss_depth.detach()
    loss = loss + tc.w_depth * loss_depth

    if stage in ("blend", "sync"):
        nb = min(len(pasted), cfg.blend.batch)
        poses = data.poses[idx[:nb]]
        origins = model.region_origin(poses)
        region = crop_images(data.image(idx[:nb]), origins, model.region)
        comp, m = model.paste(pasted[:nb], poses, origins, region)
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
        parts["sync"] = loss_sync.detach()
        loss = loss + tc.w_sync * loss_sync
    return loss, parts, pair


def _render_mouths(model, data: ClipData, cfg: EngineConfig, mel: torch.Tensor, idx: np.ndarray,
                   gen: torch.Generator, shape: tuple[int, int], audio: Optional[torch.Tensor] = None) -> torch.Tensor:
    """(B, 3, h, w) generated canonical mouths of frames idx (continuous sampling when configured);
    audio: the lip field's audio feature of mel, when the step has it already."""
    t = data.times(idx, gen)
    if not cfg.train.continuous_sampling:
        return model.lip.render(mel, t, *shape, audio=audio)
    cond = model.lip.condition(mel, t, audio)
    query = lambda x: model.lip.decode(model.lip.embed(x), cond, model.lip.base(x))
    return continuous_sample(query, len(idx), *shape, device=cond.device, generator=gen)


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
