"""Engine configuration: one small dataclass per stage, and the two presets.

The whole EngineConfig travels inside every checkpoint and is written beside it
as checkpoints/config.json, so a checkpoint always rebuilds the model it saved.
`quick` trains on a 2-core CPU in minutes at half mouth resolution; `standard`
is the paper's 8x256 field at full resolution, meant for a CUDA GPU.
"""
from __future__ import annotations

import hashlib
import json
from dataclasses import asdict, dataclass, field, fields, replace
from typing import Any, Optional

from .errors import UserError


# The regularisers below (dropout, time-code dropout, mel noise, time jitter) were halved or removed
# in an ablation (bench/quality.py, obama_address_a): teeth came back and all four new speeches
# landed in sync, but held-out PSNR fell 1.3 dB and the held-out motion correlation from 0.3 to 0.1,
# since the time code then stands in for speech on frames past the training range. They stay.
@dataclass
class LipFieldConfig:
    width: int = 96                   # MLP width (paper: 256)
    n_layers: int = 4                 # MLP depth (paper: 8)
    skip_at: int = 2                  # the fused input is concatenated again before this layer
    x_freqs: int = 10                 # positional-encoding frequencies of the mouth coordinate
    t_freqs: int = 3                  # sinusoidal frequencies of the background-frame time code
    t_dropout: float = 0.5            # share of training samples whose time code is dropped
    n_mels: int = 80
    mel_window: int = 40              # mel frames per window (+-200 ms)
    sub_window: int = 32              # the encoder sees sub-windows; their shifts smooth over time
    smooth_shifts: list[int] = field(default_factory=lambda: [-4, 0, 4])
    smooth_weights: list[float] = field(default_factory=lambda: [0.25, 0.5, 0.25])
    audio_channels: list[int] = field(default_factory=lambda: [32, 32, 64, 64])
    audio_dim: int = 64
    dropout: float = 0.2              # in the audio encoder and on the fused audio feature
    scale: float = 0.3                # mouth resolution (relative to the canonical box) in training
    render_scale: float = 0.5         # resolution at which the field is queried when rendering without
                                      # DetailNet (with it, the field renders at `scale`, as trained)
    prior: bool = True                # output is a residual over the mean training mouth
    shape_dims: int = 0               # lip-shape coefficients the audio feature must predict (LipShapeHead),
                                      # with train.w_shape; 8 / 0.01 cost held-out PSNR on two clips (README)


@dataclass
class GamemConfig:
    smooth_weight: float = 0.05       # gradient penalty on (depth - initial depth)
    depth_lr: float = 0.05            # Adam step on the depth map, in working pixels
    c2o_iters: int = 6               # fixed-point steps; steep jaw depth needs more than 4
    c2o_stride: int = 4               # C2O for pasting is solved every this many pixels, then upsampled
    depth_batch: int = 2              # observed frames per step for the photometric depth loss
    scale: float = 0.5                # resolution of the depth loss relative to the working crop


@dataclass
class BlendNetConfig:
    channels: list[int] = field(default_factory=lambda: [8, 16, 32])
    region_scale: float = 1.4         # blended region around the pasted mouth, relative to the box
    feather: float = 0.12             # feathered border of the paste mask, relative to the box side
    hole_prob: float = 0.5            # share of batches with black-hole augmentation
    batch: int = 4                    # frames per step that go through Blend-Net (of train.batch)


@dataclass
class DetailConfig:
    enabled: bool = True              # reference-guided detail (core.engine.detail) after the lip field
    refs: int = 4                     # training mouths given to DetailNet...
    sound_refs: int = 2               # ...of which these are nearest in sound,
    shape_refs: int = 0               # these in the lip shape the speech predicts (LipShapeHead), the rest in look
    channels: list[int] = field(default_factory=lambda: [16, 32, 64])
    exclude_s: float = 1.0            # in training, references come from at least this far from the target
    pool: int = 1500                  # at most this many training mouths in the reference bank
    batch: int = 4                    # frames per step that go through DetailNet (of train.batch)
    w_detail: float = 1.0             # reconstruction of the full-resolution mouth
    w_adv: float = 0.0                # patch adversarial term (PatchCritic); 0 trains no critic
    critic_channels: list[int] = field(default_factory=lambda: [32, 64, 128])
    critic_lr: float = 2e-4
    adv_start: float = 0.2            # share of the budget before the adversarial term starts


@dataclass
class TrainConfig:
    batch: int = 8                    # frames per step
    lr: float = 2e-3
    steps: int = 3000                 # default budget when neither steps nor minutes is given
    stage_split: list[float] = field(default_factory=lambda: [0.6, 0.3, 0.1])  # lip, blend, sync
    continuous_sampling: bool = True
    w_mouth: float = 1.0
    w_struct: float = 0.1             # offline SSIM + gradient term
    w_lpips: float = 0.01             # used only when LPIPS weights are already on disk
    w_face: float = 1.0
    w_depth: float = 1.0
    w_shape: float = 0.0              # weight of the lip-shape prediction (LipShapeHead); 0: none
    w_sync: float = 0.002             # at 0.01 the weak on-clip expert beat reconstruction (bench/sync_ablation.py)
    sync: bool = True                 # train a sync expert on the clip for the sync stage (core.engine.sync_expert);
                                      # a saved or given expert enables the stage even when False
    sync_negatives: int = 4
    aug_gain: float = 0.3             # +- offset of the normalised log-mel (a gain change)
    aug_noise: float = 0.15           # std of additive noise on the normalised log-mel
    aug_stretch: float = 0.1          # +- relative time stretch of the mel window
    aug_time: float = 1.0             # std (s) of the jitter of the time code
    checkpoint_every: int = 200
    preview_every: int = 100
    eval_every: int = 250             # held-out mouth PSNR into the loss history
    balance_opening: float = 0.0      # draw wide-open mouths more often: weight = opening-bin share ** -this;
                                      # 0.5 and 1 helped two clips and cost obama_address_c its teeth (README)
    ema: float = 0.0                  # decay of the weight average that renders (core.engine.ema); 0: the last
                                      # step's weights, as checkpoints from before it were made
    amp: bool = True                  # mixed precision: bf16 where the GPU or the CPU has it natively, fp16 + scaler
                                      # on older GPUs; off on CPUs without native bf16 (core.device.amp_dtype)
    compile: bool = False             # torch.compile the lip field on CUDA (unmeasured there yet: off)
    seed: int = 0


@dataclass
class EngineConfig:
    preset: str
    lip: LipFieldConfig
    gamem: GamemConfig
    blend: BlendNetConfig
    train: TrainConfig
    # Checkpoints from before reference-guided detail have no "detail" section: they load with it off.
    detail: DetailConfig = field(default_factory=lambda: DetailConfig(enabled=False))

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, obj: dict[str, Any]) -> "EngineConfig":
        def build(kind, part):
            known = {f.name for f in fields(kind)}
            return kind(**{k: v for k, v in (part or {}).items() if k in known})
        detail = build(DetailConfig, obj["detail"]) if obj.get("detail") else DetailConfig(enabled=False)
        return cls(preset=str(obj.get("preset", "custom")), lip=build(LipFieldConfig, obj.get("lip")),
                   gamem=build(GamemConfig, obj.get("gamem")), blend=build(BlendNetConfig, obj.get("blend")),
                   train=build(TrainConfig, obj.get("train")), detail=detail)

    def fingerprint(self) -> str:
        """Hash of everything that shapes the model or the loss; the budget may change on resume."""
        d = self.to_dict()
        d["train"] = {k: v for k, v in d["train"].items() if k not in ("steps", "checkpoint_every",
                                                                          "preview_every", "eval_every", "compile")}
        if not self.detail.enabled:     # as checkpoints made before the detail stage hashed it
            d.pop("detail")
        for section, name in (("train", "ema"), ("train", "balance_opening"), ("train", "w_shape"),
                              ("lip", "shape_dims"), ("detail", "shape_refs")):     # added later: off, they hash as before
            if section in d and not d[section][name]:
                d[section].pop(name)
        return hashlib.sha1(json.dumps(d, sort_keys=True).encode()).hexdigest()[:16]


def quick() -> EngineConfig:
    # With the sync stage (an expert trained on the clip, then Eq. 6 over the last 10 %) held-out
    # PSNR rose on all three shared clips in fp32 and in bf16 (README), for about a minute more.
    return EngineConfig("quick", LipFieldConfig(), GamemConfig(), BlendNetConfig(),
                        TrainConfig(stage_split=[0.7, 0.2, 0.1], ema=0.995), DetailConfig())


def standard() -> EngineConfig:
    return EngineConfig(
        "standard",
        LipFieldConfig(width=256, n_layers=8, skip_at=4, scale=1.0, render_scale=1.0),
        GamemConfig(scale=1.0, depth_batch=4, c2o_stride=2),
        BlendNetConfig(channels=[32, 64, 128], region_scale=1.6, batch=8),
        TrainConfig(batch=8, lr=5e-4, steps=20000, checkpoint_every=1000, preview_every=250, eval_every=1000,
                    ema=0.999),
        DetailConfig(channels=[32, 64, 128], batch=8),
    )


PRESETS = {"quick": quick, "standard": standard}


def preset(name: str, **overrides: Any) -> EngineConfig:
    """A preset by name; overrides are 'section.field' = value, e.g. {'train.batch': 4}."""
    if name not in PRESETS:
        raise UserError(f"unknown preset {name!r}; use one of: {', '.join(PRESETS)}.")
    cfg = PRESETS[name]()
    for key, value in overrides.items():
        section, _, name_ = key.partition(".")
        part = getattr(cfg, section)
        if not hasattr(part, name_):
            raise UserError(f"unknown setting {key!r}.")
        setattr(cfg, section, replace(part, **{name_: value}))
    return cfg


def describe(cfg: Optional[EngineConfig]) -> str:
    if cfg is None:
        return "none"
    detail = ", reference-guided detail" if cfg.detail.enabled else ""
    return f"{cfg.preset} ({cfg.lip.n_layers}x{cfg.lip.width}, mouth scale {cfg.lip.scale:g}{detail})"
