"""Rendering (docs/architecture.md, "Dub"): Renderer, and the dub job that streams a new MP4.

What each output frame shows is decided by a core.dub.plan.DubPlan. Per frame: generate
the canonical mouth from the audio window (LipField, then DetailNet with the speaker's
own reference mouths), carry it into the background frame's pose with C2O and the
learned depth (Gamem), paste, Blend-Net, and composite into the original
full-resolution frame. Frames render in batches and stream to ffmpeg; nothing holds a video.
"""
from __future__ import annotations

from pathlib import Path
from typing import Optional, Sequence

import numpy as np
import torch
import torch.nn.functional as F

from .. import audio as A
from .. import media
from ..engine.checkpoint import load_model
from ..errors import MediaError, UserError
from ..jobs import CancelToken, Progress, ProgressFn, ensure_token, no_progress
from ..engine.model import pixel_coords
from .composite import composite_cpu, composite_device
from .plan import DubPlan, rest_window
from ..project import Project
from ..device import pick_device

DUB_QUALITY = 8.0           # imageio-ffmpeg's 1..10 video quality (x264 CRF 10)


class Renderer:
    """A trained project's model, ready to render frames.

    r = Renderer(project, checkpoint=None, device="auto")
    r.mouths(mel_windows (B, 40, 80), bg_idx (B,)) -> (B, h, w, 3) uint8 canonical mouths
    r.paste(mouths, bg_idx, pose_offsets=None) -> (B, S, S, 3) uint8 working crops after Blend-Net
    r.render_crops(mel_windows, bg_idx, pose_offsets=None) -> (B, S, S, 3) uint8
    r.composite_full(crops, bg_idx) -> list of full-resolution RGB frames
    """

    def __init__(self, project: Project | str | Path, checkpoint: Optional[str | Path] = None,
                 device: str = "auto") -> None:
        self.project = project if isinstance(project, Project) else Project(project)
        self.device = pick_device(device)
        self.model, ckpt = load_model(self.project, checkpoint, self.device)
        self.config, self.step = ckpt["config"], int(ckpt["step"])
        p = self.project
        self.n, self.size, self.fps = p.n_frames, p.size, p.fps
        self.poses = torch.from_numpy(np.array(p.array("poses"), np.float32)).to(self.device)
        self.has_face = np.array(p.array("has_face"), bool)
        self.box_shape = self.model.mouth_shape(1.0)                     # (h, w)
        hs, ws = self.model.field_shape()
        with torch.no_grad():
            x = pixel_coords(hs, ws, self.device).view(1, hs * ws, 2)
            self._xe, self._base = self.model.lip.embed(x), self.model.lip.base(x)
        self._render_shape = (hs, ws)
        self._originals = None
        self._head = None                                                # pose.HeadGrid, on first use
        rh, rw = self.model.region
        # Blend-Net's output fades into the untouched frame over the region's outer pixels.
        ramp = lambda n: torch.clamp(torch.minimum(torch.arange(n) + 0.5, n - torch.arange(n) - 0.5) / 6.0, 0, 1)
        self._region_window = (ramp(rh)[:, None] * ramp(rw)[None, :]).to(self.device)[None, None]
        self.rest_window = rest_window(p)

    # --- pieces ---------------------------------------------------------------------------

    def _bg(self, bg_idx) -> np.ndarray:
        bg = np.asarray(bg_idx, np.int64).reshape(-1)
        if len(bg) and (bg.min() < 0 or bg.max() >= self.n):
            raise UserError(f"background frame {int(bg.max())} is outside the clip (0..{self.n - 1}).")
        return bg

    def _frames(self, bg: np.ndarray) -> torch.Tensor:
        f = np.stack([self.project.frames[i] for i in bg])
        return torch.from_numpy(f).to(self.device).permute(0, 3, 1, 2).float() / 255

    @staticmethod
    def _to8(x: torch.Tensor) -> np.ndarray:
        return (x.clamp(0, 1) * 255).round().byte().permute(0, 2, 3, 1).cpu().numpy()

    @torch.no_grad()
    def _mouths(self, mel_windows: np.ndarray, bg: np.ndarray) -> torch.Tensor:
        """(B, 3, h, w) float mouths at full box size"""
        mel = torch.as_tensor(np.asarray(mel_windows, np.float32), device=self.device)
        t = torch.as_tensor(bg / max(1, self.n), dtype=torch.float32, device=self.device)
        m = self.model.lip.decode(self._xe, self.model.lip.condition(mel, t), self._base)   # (B, P, 3)
        hs, ws = self._render_shape
        return self.model.refine(m.transpose(1, 2).reshape(-1, 3, hs, ws), mel)     # as model.generate

    @torch.no_grad()
    def _paste(self, mouths: torch.Tensor, bg: np.ndarray, pose_offsets=None) -> torch.Tensor:
        """(B, 3, S, S) float working crops: mouths pasted with C2O, blended by Blend-Net."""
        model = self.model
        frames = self._frames(bg)
        poses = self.poses[bg]
        out, region, m, origins = model.blend_into(mouths, frames, poses)
        out = region + (out - region) * self._region_window
        crops, paste_mask = frames.clone(), torch.zeros_like(frames[:, :1])
        rh, rw = model.region
        for b, (ox, oy) in enumerate(origins.tolist()):
            if self.has_face[bg[b]]:                     # faceless frames pass through unchanged
                crops[b, :, oy:oy + rh, ox:ox + rw] = out[b]
                paste_mask[b, :, oy:oy + rh, ox:ox + rw] = m[b]
        if pose_offsets is not None:
            crops = self._repose(crops, paste_mask, poses, bg, pose_offsets)
        return crops

    def _repose(self, crops: torch.Tensor, paste_mask: torch.Tensor, poses: torch.Tensor, bg: np.ndarray,
                pose_offsets) -> torch.Tensor:
        """Pose control: splat the head into the offset pose, then Blend-Net fills the holes."""
        off = torch.as_tensor(np.asarray(pose_offsets, np.float32).reshape(-1, 3), device=self.device).clone()
        off[torch.as_tensor(~self.has_face[bg], device=self.device)] = 0
        if not bool((off != 0).any()):
            return crops
        from .pose import head_grid, turn_heads

        if self._head is None:
            self._head = head_grid(self.model.gamem.depth, self.model.gamem.head_mask)
        if self.device.type == "cpu" and len(crops) > TURN_CHUNK:
            # Most of the crop is resampled several times: chunks keep that in the CPU's cache.
            return torch.cat([self._repose(crops[i:i + TURN_CHUNK], paste_mask[i:i + TURN_CHUNK],
                                           poses[i:i + TURN_CHUNK], bg[i:i + TURN_CHUNK],
                                           off[i:i + TURN_CHUNK]) for i in range(0, len(crops), TURN_CHUNK)])
        turn = turn_heads(self._head, poses, off)
        if turn is None:
            return crops
        rgb = turn.warp(crops, inplace=True)                # crops is this render's own composite
        # The mouth was blended before the turn; Blend-Net now fills the holes.
        return self._fill_holes(rgb, turn.holes(), turn.warp(paste_mask)) if turn.any_hole else rgb

    def _fill_holes(self, rgb: torch.Tensor, holes: torch.Tensor, paste_mask: torch.Tensor) -> torch.Tensor:
        """Fill the disocclusions: Blend-Net over the tiles near a real hole, inpainting for specks.

        Holes are mostly specks of a geometry cell or less (beside the nose, at the jaw
        line), an artefact of the coarse grid rather than an uncovered surface, and a
        Blend-Net window around all of them would be most of the face. Specks under
        SPECK_CELLS cells are inpainted from their neighbours; Blend-Net fills the rest, tile by
        tile (HOLE_TILE px, seen with HOLE_CONTEXT px around it). It changes pixels up
        to REACH px from a hole, so every tile within REACH of one is redone. Sizes are
        for a 256 px crop and scale with it, but for the context: what Blend-Net needs to
        see around a hole is set by its own receptive field, in pixels.
        """
        import cv2

        from .pose import GEOMETRY_SIDE

        k, cell = max(1, self.size // 256), max(1, self.size // GEOMETRY_SIDE)
        out = rgb.clone()
        masks = holes[:, 0].cpu().numpy().astype(np.uint8)
        big = np.zeros_like(masks)
        for b, m in enumerate(masks):
            if not m.any():
                continue
            _, label, stats, _ = cv2.connectedComponentsWithStats(m, connectivity=8)
            keep = stats[:, cv2.CC_STAT_AREA] >= SPECK_CELLS * cell * cell
            keep[0] = False
            big[b] = keep[label]
            ys, xs = np.nonzero((m > 0) & (big[b] == 0))
            if len(ys):                                   # inpaint the specks' box (+4 px) only
                y0, x0 = max(int(ys.min()) - 4, 0), max(int(xs.min()) - 4, 0)
                y1, x1 = int(ys.max()) + 5, int(xs.max()) + 5
                img = np.ascontiguousarray(self._to8(rgb[b:b + 1, :, y0:y1, x0:x1])[0])
                speck = np.zeros(img.shape[:2], np.uint8)
                speck[ys - y0, xs - x0] = 1
                fill = cv2.inpaint(img, speck, 2, cv2.INPAINT_TELEA)[ys - y0, xs - x0]      # (n, 3)
                out[b, :, torch.from_numpy(ys), torch.from_numpy(xs)] = torch.from_numpy(fill.T / 255.0).to(out)
        if not big.any():
            return out
        t, m, s, reach = HOLE_TILE * k, HOLE_CONTEXT, self.size, REACH * k
        side = t + 2 * m
        big_t = torch.from_numpy(big[:, None].astype(np.float32)).to(rgb)
        near = F.max_pool2d(big_t, t + 2 * reach, stride=t, padding=reach)       # (B, 1, S/t, S/t)
        where = torch.nonzero(near[:, 0] > 0).tolist()                           # [(b, ty, tx)]
        at = [(b, min(max(ty * t - m, 0), s - side), min(max(tx * t - m, 0), s - side)) for b, ty, tx in where]
        cut = lambda x: torch.stack([x[b, :, y:y + side, xx:xx + side] for b, y, xx in at])   # (K, C, side, side)
        rgb_p, hole_p = cut(out), cut(big_t)
        filled = self.model.blend(rgb_p, hole_p, cut(paste_mask)).clamp(0, 1)
        alpha = _dilate(_dilate(hole_p, 8 * k), reach - 8 * k, blur=True)
        patch = rgb_p + (filled - rgb_p) * alpha
        for j, ((b, ty, tx), (_, y, x)) in enumerate(zip(where, at)):
            oy, ox = ty * t - y, tx * t - x
            out[b, :, ty * t:(ty + 1) * t, tx * t:(tx + 1) * t] = patch[j, :, oy:oy + t, ox:ox + t]
        return out

    # --- the public API ---------------------------------------------------------------------

    def mouths(self, mel_windows: np.ndarray, bg_idx: Sequence[int]) -> np.ndarray:
        return self._to8(self._mouths(mel_windows, self._bg(bg_idx)))

    def paste(self, mouths: np.ndarray, bg_idx: Sequence[int], pose_offsets=None) -> np.ndarray:
        m = torch.as_tensor(np.asarray(mouths), device=self.device).permute(0, 3, 1, 2).float() / 255
        return self._to8(self._paste(m, self._bg(bg_idx), pose_offsets))

    def render_crops(self, mel_windows: np.ndarray, bg_idx: Sequence[int], pose_offsets=None) -> np.ndarray:
        bg = self._bg(bg_idx)
        return self._to8(self._paste(self._mouths(mel_windows, bg), bg, pose_offsets))

    def plan_crops(self, plan: DubPlan, frames: Sequence[int], pose=None) -> np.ndarray:
        """(K, S, S, 3) uint8 working crops of output frames `frames` of `plan`: the one way
        dub, eval, the preview and the export turn a plan into pictures."""
        windows, bg, offsets = plan.inputs(np.asarray(frames, np.int64), pose)
        return self.render_crops(windows, bg, offsets)

    def original(self, i: int) -> np.ndarray:
        """Full-resolution source frame i (the prepared JPEG pack)."""
        if self._originals is None:
            from ..prepare.framestore import JpegPack

            self._originals = JpegPack(self.project.originals)
        return self._originals[int(i)]

    def composite_full(self, crops: np.ndarray, bg_idx: Sequence[int]) -> list[np.ndarray]:
        """Put working crops (K, S, S, 3) uint8 back into the original frames (core.dub.composite)."""
        bg = self._bg(bg_idx)
        originals = [self.original(i) for i in bg]
        if self.device.type == "cpu":
            return composite_cpu(crops, [self.project.frames[i] for i in bg], originals, self.project.manifest.crop)
        t = torch.as_tensor(np.ascontiguousarray(crops), device=self.device).permute(0, 3, 1, 2)
        return self._composite_on_device(t, bg, originals)

    def plan_frames(self, plan: DubPlan, frames: Sequence[int], pose=None) -> list[np.ndarray]:
        """Full-resolution RGB frames of output frames `frames` of `plan`, as dub writes them. On a
        GPU the crops never leave it: the paste, the hole filling and the compositing run there."""
        windows, bg, offsets = plan.inputs(np.asarray(frames, np.int64), pose)
        if self.device.type == "cpu":
            return self.composite_full(self.render_crops(windows, bg, offsets), bg)
        bg = self._bg(bg)
        with torch.no_grad():
            crops = self._paste(self._mouths(windows, bg), bg, offsets)
        crops = (crops.clamp(0, 1) * 255).round().to(torch.uint8)
        return self._composite_on_device(crops, bg, [self.original(i) for i in bg])

    def _composite_on_device(self, crops: torch.Tensor, bg: np.ndarray, originals: list[np.ndarray]) -> list[np.ndarray]:
        dev = self.device
        refs = torch.as_tensor(np.stack([self.project.frames[i] for i in bg]), device=dev).permute(0, 3, 1, 2)
        full = torch.from_numpy(np.stack(originals)).pin_memory() if dev.type == "cuda" else \
            torch.from_numpy(np.stack(originals))
        full = full.to(dev, non_blocking=True).permute(0, 3, 1, 2)
        out = composite_device(crops, refs, full, self.project.manifest.crop)
        return list(out.permute(0, 2, 3, 1).cpu().numpy())

TURN_CHUNK = 8       # crops turned at a time on a CPU
HOLE_TILE = 32       # px; Blend-Net fills holes tile by tile
HOLE_CONTEXT = 32    # px of picture around each tile that Blend-Net sees (its receptive field)
REACH = 12           # px from a hole over which the filled pixels fade into the turned crop
SPECK_CELLS = 2      # holes under this many geometry cells are inpainted, not given to Blend-Net


def _dilate(mask: torch.Tensor, r: int, blur: bool = False) -> torch.Tensor:
    """(B, 1, H, W) mask grown by r px (or box-blurred over 2r+1), with OpenCV: torch's CPU pooling is slow."""
    import cv2

    k = np.ones((2 * r + 1, 2 * r + 1), np.uint8)
    m = mask[:, 0].float().cpu().numpy()
    op = (lambda a: cv2.blur(a, (2 * r + 1, 2 * r + 1))) if blur else (lambda a: cv2.dilate(a, k))
    return torch.from_numpy(np.stack([op(a) for a in m]))[:, None].to(mask.device)


# --- the dub job --------------------------------------------------------------------------------

def dub(project_dir: Path | str, audio: Path | str | np.ndarray, output: Path | str,
        checkpoint: Optional[Path | str] = None, start_frame: int = 0, pose_track=None, batch: int = 8,
        device: str = "auto", progress: ProgressFn = no_progress, cancel: Optional[CancelToken] = None,
        audio_bitrate: int = 192, sample_rate: int = A.SAMPLE_RATE, span: Optional[tuple[int, int]] = None,
        height: Optional[int] = None, quality: float = DUB_QUALITY, encoder: str = "auto",
        renderer: Optional["Renderer"] = None) -> Path:
    """Re-render the project's clip so the lips follow `audio`; returns the written MP4.

    audio: a speech file, whose own sound (rate, channels) is delivered; or an array, (N,) or
    (N, C) at `sample_rate`, delivered as it is (the editor's mix). The model's features are
    made from a 16 kHz mono copy. The sound is AAC at `audio_bitrate` kb/s.
    start_frame: the clip frame the plan starts on (ping-pong phase). pose_track: None, a
    core.dub.pose.PoseTrack, or a path to its JSON file. span: output frames [a, b) of the plan to
    write (default all; the sound is cut to them), as the editor's export of in..out.
    height: output height in pixels (default the source's); quality: the video's 1..10 quality.
    encoder: auto (the GPU's H.264 encoder when rendering on a CUDA GPU and ffmpeg can use it,
    else x264), x264 or nvenc. renderer: an already loaded Renderer of this project, so several
    dubs in one process load the model once. Everything is encoded once.
    """
    cancel = ensure_token(cancel)
    output = media.check_output(output)
    project = Project(project_dir)
    if not 32 <= int(audio_bitrate) <= 512:
        raise UserError(f"--audio-bitrate {audio_bitrate} is outside 32..512 kb/s; 192 suits speech.")
    if not 1 <= float(quality) <= 10:
        raise UserError(f"video quality {quality} is outside 1..10; 8 is the default.")
    if height is not None and not 16 <= int(height) <= 4320:
        raise UserError(f"output height {height} is outside 16..4320 pixels.")
    is_file = not isinstance(audio, np.ndarray)
    if is_file and span is not None:
        raise ValueError("a span needs the audio as an array: a speech file is delivered whole")
    sources = [("the project's source video", Path(project.manifest.source.get("path", "")))]
    for name, src in ([("the speech file", Path(audio))] if is_file else []) + sources:
        if _same_file(output, src):
            raise UserError(f"{output} is {name}; writing there would destroy it. Choose another output name.")
    if not 0 <= int(start_frame) < project.n_frames:
        raise UserError(f"--start-frame {start_frame} is outside the clip; use 0..{project.n_frames - 1}.")
    if renderer is not None and renderer.project.root.resolve() != project.root.resolve():
        raise ValueError("the renderer belongs to another project")
    # A missing or foreign model, or an encoder that cannot run, fails before any work.
    r = renderer or Renderer(project, checkpoint, device)
    codec = media.choose_encoder(encoder, gpu=r.device.type == "cuda")
    if is_file:
        progress(Progress("dub", 0, 0, f"reading {Path(audio).name}"))
        wave = media.read_audio(audio)
        name = Path(audio).name
    else:
        wave, name = speech_copy(audio, sample_rate), "the audio"
    if wave.size < A.SAMPLE_RATE // 10:
        raise MediaError(f"{name} has less than 0.1 s of audio; choose a longer recording.")
    if pose_track is not None and not hasattr(pose_track, "clamp"):
        from .pose import PoseTrack

        pose_track = PoseTrack.load(pose_track)
    plan = DubPlan.for_speech(project, wave, start=int(start_frame), pose_track=pose_track)
    a, b = (0, len(plan)) if span is None else (int(span[0]), int(span[1]))
    if not 0 <= a < b <= len(plan):
        raise UserError(f"frames {a}..{b - 1} are outside the timeline (0..{len(plan) - 1}).")
    n_out = b - a
    for note in plan.notes:
        progress(Progress("dub", 0, n_out, note))
    src = project.manifest.source
    size = (int(src["width"]), int(src["height"]))
    if height is not None:
        size = (max(2, int(round(size[0] * int(height) / size[1] / 2)) * 2), int(height))
    sound = {"audio_source": audio} if is_file else \
        {"audio": _cut(audio, sample_rate, a, b, plan.fps), "audio_rate": int(sample_rate)}
    with media.VideoWriter(output, size, plan.fps, quality=float(quality), audio_bitrate=audio_bitrate,
                           codec=codec, **sound) as vw:
        for s in range(a, b, batch):
            cancel.raise_if_cancelled()
            frames = np.arange(s, min(b, s + batch))
            for frame in r.plan_frames(plan, frames):
                vw.write(_resized(frame, size))
            done = int(frames[-1]) + 1 - a
            progress(Progress("dub", done, n_out, f"rendered {done}/{n_out} frames"))
    return output


def speech_copy(audio: np.ndarray, sample_rate: int) -> np.ndarray:
    """The 16 kHz mono copy of an (N,) or (N, C) array that the model's features are made from."""
    wave = np.asarray(audio, np.float32)
    if wave.ndim == 2:
        wave = wave.mean(axis=1)
    if wave.ndim != 1:
        raise UserError(f"audio must be (samples,) or (samples, channels); got shape {np.shape(audio)}.")
    if int(sample_rate) not in media.AAC_RATES:
        raise UserError(f"audio at {sample_rate} Hz cannot be delivered as AAC; use 16, 44.1 or 48 kHz.")
    if int(sample_rate) != A.SAMPLE_RATE:
        import librosa

        wave = librosa.resample(wave, orig_sr=int(sample_rate), target_sr=A.SAMPLE_RATE).astype(np.float32)
    return wave


def _cut(audio: np.ndarray, sample_rate: int, a: int, b: int, fps: float) -> np.ndarray:
    """The delivered sound of output frames [a, b)."""
    spf = sample_rate / fps
    return np.asarray(audio, np.float32)[int(round(a * spf)):int(round(b * spf))]


def _resized(frame: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    if frame.shape[1] == size[0] and frame.shape[0] == size[1]:
        return frame
    import cv2

    shrink = size[1] < frame.shape[0]
    return cv2.resize(frame, size, interpolation=cv2.INTER_AREA if shrink else cv2.INTER_LANCZOS4)


def _same_file(a: Path, b: Path) -> bool:
    try:
        return a.exists() and b.exists() and a.samefile(b)
    except OSError:
        return False
