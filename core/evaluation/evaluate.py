"""The evaluation job: the paper's Table 1 protocol on the held-out split, with baselines.

The model is driven by the held-out audio over the held-out frames' poses and
compared with the real held-out frames. Every method goes through the same
renderer paste (C2O warp + Blend-Net) and the same metrics:

  real       the real frames: the upper bound for sync (image metrics are trivially perfect)
  static     the canonical frame's mouth pasted on every frame: no speech at all
  retrieval  for each frame the training mouth whose mel window is nearest
  model      the trained lip field

Regions (chosen so that every method is compared on the same pixels):
- mouth: both images warped O2C with the prepared depth and poses and cropped to
  the canonical mouth box, exactly as prepare makes mouth.npy; PSNR and SSIM are
  computed there, CPBD on its inner box (the feathered border, where real pixels
  show through the paste, removed). Sharpness is measured on the frames as shown,
  over the pixels that map inside that inner box: there every pixel is generated,
  and no second resampling softens it. Head motion is factored out, as in the paper's lip space.
- face: the whole S x S working crop.
- LMD: the 40 lip landmarks of faces.LIPS, tracked by faces.FaceTracker on the
  method's crops and on the real crops, over the real inter-ocular distance. A project
  prepared with `--tracker fan` measures it as the paper does, on FAN's 20 lip points
  (48-67 of its 68), tracked by FAN on both (report.json's "lmd_points" says which).
- sync: sync_probe.SyncProbe, fitted on the real training frames, reads speech energy
  from the tracked lip shape; its cross-correlation with the driving speech gives
  the offset relative to the speaker's own lead (articulation leads sound by a
  speaker-dependent 1-5 frames), so well-synced video reads 0.

With `audio`, the cross-identity test (paper Testset III): the model and the
baselines are driven by other speech over the clip's frames in order, and only
the offset and its confidence are reported, since there is no ground truth.
"""
from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Optional

import numpy as np

from . import metrics as M
from .sync_probe import SyncProbe, chance_confidence, fit_probe
from ..errors import UserError
from ..jobs import CancelToken, Progress, ProgressFn, ensure_token, no_progress
from ..project import Project

METHODS = ("real", "static", "retrieval", "model")
CROSS_METHODS = ("static", "retrieval", "model")
BATCH = 16
STRIP_FRAMES = 6


@dataclass
class EvalData:
    """What the report draws besides the numbers."""

    fps: float
    frame_index: np.ndarray                                  # (N,) source frame of each evaluated frame
    strip_at: np.ndarray                                     # (K,) positions into the N frames
    strips: dict[str, np.ndarray] = field(default_factory=dict)     # method -> (K, s, s, 3) mouth views
    openings: dict[str, np.ndarray] = field(default_factory=dict)   # method -> (N,) lip opening
    envelope: Optional[np.ndarray] = None                    # (N,) speech energy in dB
    sync_curves: dict[str, tuple[np.ndarray, np.ndarray]] = field(default_factory=dict)  # offsets, correlation
    history: Optional[list[dict[str, Any]]] = None


# --- pieces -------------------------------------------------------------------------

def held_out(project: Project) -> np.ndarray:
    """Indices of the held-out frames (the last split of the clip)."""
    idx = np.arange(project.n_train, project.n_frames)
    if idx.size < 3 * 2 + 1:
        raise UserError(f"{project.root} holds out only {idx.size} frames; prepare a clip of at least 3 s.")
    return idx


def nearest_audio(train_windows: np.ndarray, query: np.ndarray, chunk: int = 256) -> np.ndarray:
    """(Q,) index into train_windows (T, W, F) of the window nearest each query (Q, W, F) in L2."""
    tr = train_windows.reshape(len(train_windows), -1).astype(np.float32)
    q = query.reshape(len(query), -1).astype(np.float32)
    tn = (tr * tr).sum(1)
    out = np.empty(len(q), np.int64)
    for s in range(0, len(q), chunk):
        d = tn[None, :] - 2.0 * q[s:s + chunk] @ tr.T                   # |q|^2 is constant per row
        out[s:s + chunk] = np.argmin(d, axis=1)
    return out


def prepared_geometry(project: Project):
    """The prepared depth and head mask (torch), and the poses (numpy): what prepare warped with."""
    import torch

    depth = torch.from_numpy(np.array(project.array("depth"), np.float32))
    head = torch.from_numpy(np.array(project.array("head_mask"), np.float32))
    return depth, head, np.asarray(project.array("poses"), np.float32)


def canonical_mouths(project: Project, crops: np.ndarray, idx: np.ndarray) -> np.ndarray:
    """(N, h, w, 3) uint8: working crops warped O2C to the canonical mouth box, as prepare does."""
    import torch

    from ..engine.warp import MOUTH_RESAMPLE, o2c_grid, sample

    box = [int(v) for v in project.manifest.mouth_box]
    depth, head, poses = prepared_geometry(project)
    out = []
    with torch.no_grad():
        for s in range(0, len(idx), 64):
            grid = o2c_grid(depth, head, torch.from_numpy(poses[idx[s:s + 64]]), box)
            img = torch.from_numpy(np.ascontiguousarray(crops[s:s + 64])).permute(0, 3, 1, 2).float()
            out.append(sample(img, grid, mode=MOUTH_RESAMPLE).round().clamp(0, 255).byte().permute(0, 2, 3, 1).numpy())
    return np.concatenate(out)


def track(crops: np.ndarray, cancel: Optional[CancelToken] = None, tracker: str = "facemesh") -> np.ndarray:
    """(N, 478, 3) landmarks of a frame sequence by a fresh tracker, NaN where no face.

    tracker: the project's (Manifest.tracker); a fan project's dense points come from facemesh.
    """
    from ..prepare.faces import FaceTracker
    from ..prepare.tracking import dense_backend

    out = []
    with FaceTracker(tracker=dense_backend(tracker)) as tracker:
        for f in crops:
            if cancel is not None:
                cancel.raise_if_cancelled()
            lm, _ = tracker.process(f)
            out.append(lm if lm is not None else np.full((478, 3), np.nan, np.float32))
    return np.stack(out)


def lmd_points(project: Project) -> str:
    """The landmark set LMD is measured on: FAN's lips where the project was prepared with FAN."""
    return "fan68" if getattr(project.manifest, "tracker", "facemesh") == "fan" else "facemesh40"


def fan_lip_tracks(fan, crops: dict[str, np.ndarray], cancel: Optional[CancelToken] = None) -> dict[str, np.ndarray]:
    """FAN's (N, 68, 3) landmarks of each method's crops; crops must hold "real".

    The detector runs on the real crops only, and every method is read inside the boxes found
    there: the head is where the real frame has it, so the detector's jitter stays out of the LMD.
    """
    real, boxes = fan.track(crops["real"], cancel=cancel)
    return {name: real if name == "real" else fan.track(crops[name], boxes=boxes, cancel=cancel)[0]
            for name in crops}


def read_speech(project: Project) -> np.ndarray:
    """The clip's own speech at 16 kHz."""
    from ..media import read_audio

    path = project.speech_path
    if not project.has_audio or not path.is_file():
        raise UserError(f"{project.root} has no speech track, so lip sync cannot be measured; "
                        f"prepare a clip with its own audio.")
    return read_audio(path)


def calibrate(project: Project, wave: np.ndarray) -> SyncProbe:
    """The sync probe of the real training frames: the speaker's own lead and lip-to-speech read-out."""
    return fit_probe(*training_tracks(project, wave))


def training_tracks(project: Project, wave: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Landmarks and speech_envelope of the training frames, which the sync probe is fitted on.

    The prepared landmarks are time-smoothed; evaluated tracks are smoothed the same
    way by smoothed(), so their motion is on the same scale.
    """
    from ..audio import frame_times

    n = project.n_train
    lm = np.asarray(project.array("landmarks")[:n], np.float64)
    return lm, M.speech_envelope(wave, 16000, frame_times(n, project.fps))


def smoothed(landmarks: np.ndarray) -> np.ndarray:
    """Freshly tracked landmarks smoothed over time as prepare smooths them."""
    from ..prepare.faces import smooth_tracks

    ok = np.isfinite(landmarks).all(axis=(1, 2))
    return smooth_tracks(landmarks, ok)


def opening(landmarks: np.ndarray) -> np.ndarray:
    """(N,) lip opening of freshly tracked landmarks, smoothed over time as prepare smooths them."""
    return M.lip_opening(smoothed(landmarks))


def lip_view_box(landmarks: np.ndarray, size: int) -> tuple[int, int, int]:
    """(x0, y0, side) of a square around the lips over all frames, for the frame strips."""
    from ..prepare.faces import LIPS

    pts = landmarks[:, LIPS, :2].reshape(-1, 2)
    pts = pts[np.isfinite(pts).all(1)]
    if pts.size == 0:
        return 0, 0, size
    lo, hi = pts.min(0), pts.max(0)
    side = int(min(size, max(32, 1.5 * float((hi - lo).max()))))
    cx, cy = (lo + hi) / 2
    x0 = int(np.clip(round(cx - side / 2), 0, size - side))
    y0 = int(np.clip(round(cy - side / 2), 0, size - side))
    return x0, y0, side


def _render(renderer, windows: np.ndarray, bg: np.ndarray, mouths: Optional[np.ndarray], name: str,
            progress: ProgressFn, cancel: CancelToken) -> np.ndarray:
    """(N, S, S, 3) uint8 crops of one method, in batches, through the renderer's paste."""
    out = []
    n = len(bg)
    for s in range(0, n, BATCH):
        cancel.raise_if_cancelled()
        b = slice(s, s + BATCH)
        if mouths is None:
            out.append(np.asarray(renderer.render_crops(windows[b], bg[b])))
        else:
            out.append(np.asarray(renderer.paste(mouths[b], bg[b])))
        progress(Progress("render", min(s + BATCH, n), n, name))
    return np.concatenate(out).astype(np.uint8)


def _fit_mouths(mouths: np.ndarray, shape: tuple[int, int]) -> np.ndarray:
    """Resize baseline mouths (N, h, w, 3) to the renderer's mouth size (h', w') when they differ."""
    import cv2

    if mouths.shape[1:3] == tuple(shape):
        return mouths
    return np.stack([cv2.resize(m, (shape[1], shape[0]), interpolation=cv2.INTER_AREA) for m in mouths])


def _mean(x: np.ndarray) -> float:
    x = np.asarray(x, np.float64)
    x = x[np.isfinite(x)]
    return float(x.mean()) if x.size else float("nan")


@dataclass
class Scores:
    results: dict[str, dict[str, float]]        # method -> metric -> value
    landmarks: dict[str, np.ndarray]            # method -> (N, 478, 3) tracked on its crops
    syncs: dict[str, M.SyncReading]
    calibration: SyncProbe
    chance: float                               # av_confidence reached by chance at this length
    envelope: np.ndarray                        # (M, bands) speech energy at env_times
    lmd_points: str = "facemesh40"              # the landmark set of the LMD (metrics.LMD_SETS)


def inner_margin(project: Project, feather: float) -> int:
    """Pixels of the canonical mouth box's border that the paste feathers into the real frame."""
    _, _, bw, bh = project.manifest.mouth_box
    return int(np.ceil(feather * min(bw, bh)))


def interior(project: Project, idx: np.ndarray, margin: int) -> np.ndarray:
    """(N, S, S) bool: pixels of the frames `idx` that map inside the canonical mouth box less its
    feathered border. There every pixel a user sees of a pasted mouth is generated."""
    import torch

    from ..engine.warp import c2o_grid

    x0, y0, bw, bh = (int(v) for v in project.manifest.mouth_box)
    depth, head, poses = prepared_geometry(project)
    out = []
    with torch.no_grad():
        for s in range(0, len(idx), 32):
            u = c2o_grid(depth, head, torch.from_numpy(poses[idx[s:s + 32]]))        # (B, S, S, 2)
            inside = ((u[..., 0] >= x0 + margin) & (u[..., 0] <= x0 + bw - margin)
                      & (u[..., 1] >= y0 + margin) & (u[..., 1] <= y0 + bh - margin))
            out.append(inside.numpy())
    return np.concatenate(out)


def detail(crops: np.ndarray, masks: np.ndarray, mouths: np.ndarray, margin: int) -> dict[str, float]:
    """Sharpness where the mouth is generated: on the crops (N, S, S, 3) as users see them, inside
    masks (N, S, S) from interior(); CPBD on the canonical mouths' (N, h, w, 3) inner box."""
    return {"sharpness_inner": _mean(M.gradient_energy(crops, masks)),
            "laplacian_inner": _mean(M.laplacian_variance(crops, masks)),
            "cpbd": _mean(M.cpbd_batch(M.inner_box(mouths, margin)))}


def teeth(crops: np.ndarray, landmarks: np.ndarray, frames: np.ndarray) -> float:
    """Mean teeth_share over `frames` of the crops, inside each crop's own tracked inner lips."""
    from ..prepare.faces import LIPS_INNER

    vals = [M.teeth_share(crops[i], landmarks[i, LIPS_INNER]) for i in frames]
    return _mean(np.array(vals, np.float64)) if vals else float("nan")


def open_frames(real_landmarks: np.ndarray) -> np.ndarray:
    """Frames whose real inner lips are open: above the median gap, and at least 5 % of the eye distance."""
    from ..prepare.faces import mouth_opening

    gap = mouth_opening(smoothed(real_landmarks))
    ok = np.isfinite(gap)
    if not ok.any():
        return np.zeros(0, np.int64)
    return np.nonzero(ok & (gap >= max(0.05, float(np.median(gap[ok])))))[0]


def score(project: Project, idx: np.ndarray, crops: dict[str, np.ndarray], speech: np.ndarray,
          env_times: np.ndarray, env_start: int, progress: ProgressFn = no_progress,
          cancel: Optional[CancelToken] = None, margin: int = 0, fan=None) -> Scores:
    """Every metric of every method's crops (N, S, S, 3) of frames `idx`.

    With a "real" entry, image and lip-shape metrics are computed against it;
    without one (cross-identity) only the sync offset and confidence.
    speech/env_times/env_start: the driving audio, the frame times it spans, and
    which of those belongs to the first crop. fan: a tracking.fan.FanBackend, to measure LMD
    on FAN's lips (a project prepared with --tracker fan); otherwise on the mesh's.
    """
    from ..prepare.faces import mouth_opening

    cancel = ensure_token(cancel)
    progress(Progress("calibrate", 0, 1, "measuring the speaker's own sync on the training frames"))
    wave = read_speech(project)
    train_lm, train_env = training_tracks(project, wave)
    calib = fit_probe(train_lm, train_env)
    chance = chance_confidence(calib, train_lm, train_env, len(idx))    # what len(idx) frames reach by chance
    env = M.speech_envelope(speech, 16000, env_times)
    lms: dict[str, np.ndarray] = {}
    syncs: dict[str, M.SyncReading] = {}
    results: dict[str, dict[str, float]] = {}
    for k, name in enumerate(crops):
        progress(Progress("track", k, len(crops), name))
        lms[name] = track(crops[name], cancel, project.manifest.tracker)
        syncs[name] = calib.offset(smoothed(lms[name]), env, envelope_start=env_start)
        gap = mouth_opening(smoothed(lms[name]))
        results[name] = {"av_offset_frames": int(syncs[name].offset),
                         "av_confidence": float(syncs[name].confidence),
                         "opening_std": float(np.nanstd(gap)) if np.isfinite(gap).any() else float("nan")}
    inner = interior(project, idx, margin)
    if "real" not in crops:
        for name in crops:
            results[name].update(detail(crops[name], inner, canonical_mouths(project, crops[name], idx), margin))
        return Scores(results, lms, syncs, calib, chance, env)

    ok = np.asarray(project.array("has_face"), bool)[idx]
    real = crops["real"]
    real_mouth = canonical_mouths(project, real, idx)
    opened = open_frames(lms["real"])
    points = "fan68" if fan is not None else "facemesh40"
    if fan is not None:
        progress(Progress("track", 0, 1, "FAN lip landmarks"))
    lips = fan_lip_tracks(fan, crops, cancel) if fan is not None else lms
    for k, name in enumerate(crops):
        cancel.raise_if_cancelled()
        progress(Progress("metrics", k, len(crops), name))
        mouths = real_mouth if name == "real" else canonical_mouths(project, crops[name], idx)
        results[name] = {
            "psnr_mouth": _mean(M.psnr(mouths[ok], real_mouth[ok])),
            "ssim_mouth": _mean(M.ssim(mouths[ok], real_mouth[ok])),
            "psnr_face": _mean(M.psnr(crops[name][ok], real[ok])),
            "ssim_face": _mean(M.ssim(crops[name][ok], real[ok])),
            **detail(crops[name][ok], inner[ok], mouths[ok], margin),
            "teeth_share": teeth(crops[name], lms[name], opened),
            "lmd": _mean(M.lip_distance(lips[name], lips["real"], points)[ok]),
            **results[name],
        }
    return Scores(results, lms, syncs, calib, chance, env, points)


# --- the job --------------------------------------------------------------------------

def evaluate(project_dir: Path | str, checkpoint: Optional[Path | str] = None,
             output: Optional[Path | str] = None, audio: Optional[Path | str] = None,
             progress: ProgressFn = no_progress, cancel: Optional[CancelToken] = None) -> dict[str, Any]:
    """Score the trained model and the baselines; write report.json and report.html.

    output defaults to PROJECT/eval (or PROJECT/eval_cross with `audio`).
    Returns the report dict (what report.json holds) with "output" set.
    """
    from ..audio import frame_times, mel_windows
    from ..dub.plan import DubPlan
    from ..dub.render import Renderer
    from .report import write_report

    cancel = ensure_token(cancel)
    t0 = time.perf_counter()
    project = Project(project_dir)
    out_dir = Path(output) if output else project.eval_dir(cross=audio is not None)
    progress(Progress("load", 0, 1, "loading the model"))
    renderer = Renderer(project, checkpoint=checkpoint, device="auto")
    fan = None
    if audio is None and lmd_points(project) == "fan68":
        from ..prepare.tracking.fan import FanBackend

        fan = FanBackend()           # before minutes of rendering: a missing weight file fails now
    wave = read_speech(project)
    mel = np.asarray(project.array("mel"), np.float32)
    mouth_gt = project.array("mouth")
    has_face = np.asarray(project.array("has_face"), bool)
    fps, n_all, n_train = project.fps, project.n_frames, project.n_train
    train_idx = np.arange(n_train)[has_face[:n_train]]
    train_windows = mel_windows(mel, frame_times(n_all, fps)[train_idx])
    t_setup = time.perf_counter()

    # One plan decides what the model is shown, as for dub: the silence gets the clip's rest window.
    if audio is None:
        idx = held_out(project)
        plan = DubPlan.for_frames(project, idx, frame_times(n_all, fps)[idx], mel, wave)
        speech, env_start = wave, n_train
        env_times = frame_times(n_all, fps)
        methods = METHODS
    else:
        from ..media import read_audio

        speech = read_audio(audio)
        n_out = int(len(speech) / 16000 * fps)
        if n_out < 30:
            raise UserError(f"{Path(audio).name} is shorter than one second; choose a longer speech file.")
        plan = DubPlan.for_speech(project, speech, n_out=n_out)
        idx = plan.background
        env_start = 0
        env_times = frame_times(n_out, fps)
        methods = CROSS_METHODS
    every = np.arange(len(plan))
    windows = plan.speech_windows(every)          # the baselines' retrieval reads the speech itself

    # Render every method through the same paste.
    t_r = time.perf_counter()
    crops: dict[str, np.ndarray] = {}
    model_windows = plan.windows(every)
    model_crops = _render(renderer, model_windows, idx, None, "model", progress, cancel)
    mouth_shape = tuple(renderer.box_shape)
    static = np.repeat(np.asarray(mouth_gt[project.manifest.canonical_index])[None], len(idx), 0)
    crops["static"] = _render(renderer, windows, idx, _fit_mouths(static, mouth_shape), "static", progress, cancel)
    near = train_idx[nearest_audio(train_windows, windows)]
    retrieved = np.stack([mouth_gt[i] for i in near])
    crops["retrieval"] = _render(renderer, windows, idx, _fit_mouths(retrieved, mouth_shape), "retrieval",
                                 progress, cancel)
    crops["model"] = model_crops
    if "real" in methods:
        crops = {"real": np.asarray(project.frames[idx]), **crops}
    t_render = time.perf_counter() - t_r

    t_m = time.perf_counter()
    margin = inner_margin(project, renderer.config.blend.feather)
    sc = score(project, idx, crops, speech, env_times, env_start, progress, cancel, margin=margin, fan=fan)
    t_metrics = time.perf_counter() - t_m

    # Pictures.
    lms, calib = sc.landmarks, sc.calibration
    view_lm = lms.get("real", lms["model"])
    x0, y0, side = lip_view_box(view_lm, project.size)
    at = np.linspace(0, len(idx) - 1, min(STRIP_FRAMES, len(idx))).round().astype(int)
    data = EvalData(fps=fps, frame_index=idx, strip_at=at,
                    strips={k: v[at, y0:y0 + side, x0:x0 + side] for k, v in crops.items()},
                    openings={k: opening(v) for k, v in lms.items()},
                    envelope=sc.envelope[env_start:env_start + len(idx)].mean(axis=1),
                    sync_curves={k: (s.lags, s.curve) for k, s in sc.syncs.items()},
                    history=project.history())
    info = renderer_info(renderer, project, checkpoint)
    report: dict[str, Any] = {
        "kind": "cross_identity" if audio else "held_out",
        "project": str(project.root), "project_id": project.id,
        **info,
        "audio": str(audio) if audio else None,
        "frames": {"evaluated": int(len(idx)), "first": int(idx[0]), "n_train": n_train, "n_frames": n_all,
                   "fps": fps},
        "calibration": {"train_offset_frames": int(calib.lead), "confidence": float(calib.lead_confidence),
                        "frames": n_train, "probe_std": [float(x) for x in calib.scale],
                        "chance_confidence": sc.chance},
        "methods": sc.results,
        **({"lmd_points": sc.lmd_points} if audio is None else {}),
        "regions": {
            "mouth": "canonical mouth box %s px (O2C-warped with prepared depth and poses)"
                     % list(project.manifest.mouth_box),
            "face": f"working crop {project.size}x{project.size}",
            "cpbd": f"canonical mouth box without its {margin} px feathered border (every pixel generated)",
            "sharpness": "mean Sobel gradient magnitude and Laplacian variance of the frames as shown, on the "
                         "pixels that map inside that inner box",
            "teeth": "share of bright, unsaturated pixels inside each method's tracked inner lips, "
                     "over the frames whose real mouth is open",
            "opening": "std of the tracked inner-lip gap over inter-ocular distance",
            "lmd": M.LMD_SETS[sc.lmd_points],
            "sync": "speech energy read from lip shape by a probe fitted on the real training frames, "
                    "cross-correlated with the driving speech; 0 is the speaker's own lead",
        },
    }
    progress(Progress("report", 0, 1, "writing the report"))
    timings = {"setup_s": t_setup - t0, "render_s": t_render, "metrics_s": t_metrics}
    report["timings"] = {k: round(v, 2) for k, v in timings.items()}
    write_report(out_dir, report, data)
    report["timings"]["total_s"] = round(time.perf_counter() - t0, 2)
    report["output"] = str(out_dir)
    progress(Progress("done", 1, 1, f"report in {out_dir}", {"report": report}))
    return report


def renderer_info(renderer, project: Project, checkpoint: Optional[Path | str]) -> dict[str, Any]:
    """Checkpoint, preset, steps and training minutes of the model being evaluated."""
    from ..engine.checkpoint import find_checkpoint, load_checkpoint

    path = find_checkpoint(project, checkpoint)
    ckpt = load_checkpoint(path, project)
    return {"checkpoint": str(path), "preset": ckpt["config"].preset, "train_steps": int(ckpt["step"]),
            "train_minutes": round(float(ckpt.get("elapsed_s", 0.0)) / 60.0, 2), "device": str(renderer.device)}
