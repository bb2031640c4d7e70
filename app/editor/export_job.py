"""Export the timeline as an MP4: core.dub.render.dub renders frames in..out of the timeline's plan.

Qt-free. The plan is the preview's: built from the mix of the whole timeline,
ping-ponging from timeline frame 0, with the keyframes where they are, so every
exported frame is the frame the editor showed. The mix goes to dub as an array
(16 kHz mono, the editor's mixing rate, delivered at that rate without another
resampling) and the video is encoded once, at the chosen size and quality. The
output appears under its final name only when everything succeeded.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Optional

import numpy as np

from speech2lip.core.errors import UserError
from speech2lip.core.jobs import CancelToken, Progress, ProgressFn, no_progress

SIZES = {"source": None, "1080p": 1080, "720p": 720}
QUALITIES = {"Draft": 5.0, "Good": 7.0, "High": 8.0, "Best": 9.5}    # imageio-ffmpeg's 1..10 scale
AUDIO_BITRATES = (96, 128, 192, 256, 320)                              # AAC kb/s offered
DEFAULT_AUDIO_BITRATE = 192


@dataclass
class ExportSettings:
    output: Path
    start: int                    # timeline frames [start, stop)
    stop: int
    size: str = "source"          # key of SIZES
    quality: str = "High"         # key of QUALITIES
    audio_bitrate: int = DEFAULT_AUDIO_BITRATE


def export(project_dir: Path | str, wave: np.ndarray, settings: ExportSettings, pose_track=None,
           checkpoint: Optional[str] = None, progress: ProgressFn = no_progress,
           cancel: Optional[CancelToken] = None, sample_rate: int = 16000) -> Path:
    """Render timeline frames [settings.start, settings.stop) of the plan of `wave`, the whole
    timeline's mix at `sample_rate`; pose_track: the timeline's keyframes (core.dub.pose.PoseTrack)."""
    from speech2lip.core.dub.render import dub

    out = Path(settings.output)
    if out.suffix.lower() != ".mp4":
        raise UserError(f"{out.name}: export writes MP4 files; end the name with .mp4.")
    if out.is_dir():
        raise UserError(f"{out} is a folder; choose a file name for the video.")
    total = settings.stop - settings.start

    def relay(p: Progress) -> None:
        progress(Progress("render", p.done, p.total or total, p.message))

    return dub(project_dir, np.asarray(wave, np.float32), out, checkpoint=checkpoint, pose_track=pose_track,
               progress=relay, cancel=cancel, audio_bitrate=int(settings.audio_bitrate), sample_rate=sample_rate,
               span=(settings.start, settings.stop), height=SIZES[settings.size],
               quality=QUALITIES[settings.quality])
