"""Export the timeline as an MP4: core.render.dub over the chosen range, then scale if asked.

Qt-free. The timeline's mix for the range goes to a temporary WAV, keyframes
shift to the range's start, and dub renders into a temporary file beside the
output. A size other than the source (or another quality) is one more ffmpeg
pass. The output appears under its final name only when everything succeeded;
a failure or cancel leaves no partial file behind.
"""
from __future__ import annotations

import subprocess
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Optional

import numpy as np

from speech2lip.core.errors import UserError
from speech2lip.core.jobs import CancelToken, Progress, ProgressFn, ensure_token, no_progress

SIZES = {"source": None, "1080p": 1080, "720p": 720}
QUALITIES = {"Draft": 5.0, "Good": 7.0, "High": 8.0, "Best": 9.5}    # imageio-ffmpeg's 1..10 scale
DUB_QUALITY = 8.0                                                     # what core.media.VideoWriter writes


@dataclass
class ExportSettings:
    output: Path
    start: int                    # timeline frames [start, stop)
    stop: int
    size: str = "source"          # key of SIZES
    quality: str = "High"         # key of QUALITIES


def crf(quality: float) -> int:
    """imageio-ffmpeg's mapping of its 1..10 quality to x264's CRF."""
    return int((1 - quality / 10.0) * 51)


def export(project_dir: Path | str, wave: np.ndarray, settings: ExportSettings, start_frame: int,
           pose_track=None, checkpoint: Optional[str] = None, progress: ProgressFn = no_progress,
           cancel: Optional[CancelToken] = None) -> Path:
    """Render `wave` (the range's 16 kHz mix) over the clip from source frame `start_frame`."""
    from speech2lip.core.media import ffmpeg_exe, write_wav
    from speech2lip.core.project import atomic_path
    from speech2lip.core.render import dub

    cancel = ensure_token(cancel)
    out = Path(settings.output)
    if out.suffix.lower() != ".mp4":
        raise UserError(f"{out.name}: export writes MP4 files; end the name with .mp4.")
    if out.is_dir():
        raise UserError(f"{out} is a folder; choose a file name for the video.")
    height = SIZES[settings.size]
    quality = QUALITIES[settings.quality]
    out.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix=".s2l-export-", dir=out.parent) as tmp:
        audio = Path(tmp) / "mix.wav"
        write_wav(audio, wave)
        with atomic_path(out) as part:
            rendered = part if height is None and quality == DUB_QUALITY else Path(tmp) / "rendered.mp4"
            total = settings.stop - settings.start

            def relay(p: Progress) -> None:
                progress(Progress("render", p.done, p.total or total, p.message))

            dub(project_dir, audio, rendered, checkpoint=checkpoint, start_frame=start_frame,
                pose_track=pose_track, progress=relay, cancel=cancel)
            cancel.raise_if_cancelled()
            if rendered != part:
                progress(Progress("encode", 0, 1, "encoding the final size"))
                vf = f"scale=-2:{height}:flags=lanczos" if height else "null"
                cmd = [ffmpeg_exe(), "-hide_banner", "-loglevel", "error", "-nostdin", "-y", "-i", str(rendered),
                       "-vf", vf, "-c:v", "libx264", "-crf", str(crf(quality)), "-pix_fmt", "yuv420p",
                       "-c:a", "copy", "-movflags", "+faststart", "-f", "mp4", str(part)]
                proc = subprocess.Popen(cmd, stderr=subprocess.PIPE)
                while proc.poll() is None:
                    try:
                        proc.wait(timeout=0.2)
                    except subprocess.TimeoutExpired:
                        if cancel.cancelled:
                            proc.kill()
                            proc.wait()
                            cancel.raise_if_cancelled()
                err = proc.stderr.read().decode(errors="replace") if proc.stderr else ""
                if proc.returncode != 0:
                    raise UserError(f"encoding {out.name} failed ({err.strip()[:200]}); free disk space or "
                                    "choose another size.")
                progress(Progress("encode", 1, 1, "done"))
    return out
