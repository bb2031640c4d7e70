"""Video and audio in and out through the ffmpeg that imageio-ffmpeg ships.

Any container or codec ffmpeg reads is accepted. Video is read at the clip's own
frame rate as constant frame rate, with rotation metadata applied. Audio for
the models comes out as 16 kHz mono float32; audio delivered in a video keeps
the speech file's own rate and channels. Writing streams frames into ffmpeg:
the whole video is never held in memory, and the file appears under its final
name only once it is complete.
"""
from __future__ import annotations

import re
import subprocess
from dataclasses import dataclass
from fractions import Fraction
from functools import lru_cache
from pathlib import Path
from typing import Iterator, Optional

import numpy as np

from .errors import MediaError
from .tempfiles import WorkDir, remove_stale

# Sample rates the AAC encoder takes; any other is resampled to 48 kHz for delivery.
AAC_RATES = (7350, 8000, 11025, 12000, 16000, 22050, 24000, 32000, 44100, 48000, 64000, 88200, 96000)
WORK_PREFIX = ".s2l-"


def ffmpeg_exe() -> str:
    import imageio_ffmpeg

    return imageio_ffmpeg.get_ffmpeg_exe()


@dataclass
class VideoInfo:
    width: int            # displayed size, after rotation
    height: int
    fps: float
    n_frames: int         # estimate from duration * fps; decoding gives the exact count
    duration: float
    has_audio: bool
    has_video: bool = True
    rotation: int = 0
    audio_rate: int = 0
    audio_channels: int = 0


_DURATION = re.compile(r"Duration:\s*(\d+):(\d+):(\d+(?:\.\d+)?)")
_VIDEO = re.compile(r"Stream #\d+:\d+.*?: Video: (.*)")
_AUDIO = re.compile(r"Stream #\d+:\d+.*?: Audio: (.*)")
_SIZE = re.compile(r"\b(\d{2,5})x(\d{2,5})\b")
_FPS = re.compile(r"([\d.]+(?:/\d+)?) (fps|tbr)")
_ROT = re.compile(r"rotation of (-?[\d.]+) degrees|rotate\s*:\s*(-?\d+)")


def _check_file(path: Path) -> None:
    if not path.exists():
        raise MediaError(f"{path} does not exist; check the path.")
    if path.is_dir():
        raise MediaError(f"{path} is a folder; choose a video file.")
    if path.stat().st_size == 0:
        raise MediaError(f"{path} is empty (0 bytes); the copy may have failed, copy the file again.")


def probe(path: Path | str) -> VideoInfo:
    """Read stream facts from ffmpeg's header dump. Raises MediaError for unreadable files."""
    path = Path(path)
    _check_file(path)
    proc = subprocess.run([ffmpeg_exe(), "-hide_banner", "-i", str(path)],
                          capture_output=True, text=True, errors="replace")
    err = proc.stderr
    if "Invalid data found" in err or "moov atom not found" in err or "Stream #" not in err:
        raise MediaError(f"{path.name} is not a video ffmpeg can read (it may be truncated or not a media file); "
                         "export it again as MP4 or MOV.")
    v, a = _VIDEO.search(err), _AUDIO.search(err)
    d = _DURATION.search(err)
    duration = int(d.group(1)) * 3600 + int(d.group(2)) * 60 + float(d.group(3)) if d else 0.0
    audio_rate, audio_channels = 0, 0
    if a:
        m = re.search(r"(\d+) Hz", a.group(1))
        audio_rate = int(m.group(1)) if m else 0
        desc = a.group(1)
        audio_channels = 1 if "mono" in desc else 2 if "stereo" in desc else 0
    if v is None or "attached pic" in (v.group(0) if v else ""):
        return VideoInfo(0, 0, 0.0, 0, duration, bool(a), has_video=False,
                         audio_rate=audio_rate, audio_channels=audio_channels)
    desc = v.group(1)
    size = _SIZE.search(desc)
    fps_m = _FPS.search(desc)
    if size is None or fps_m is None:
        raise MediaError(f"{path.name}: cannot read the video size or frame rate; re-encode it as H.264 MP4.")
    w, h = int(size.group(1)), int(size.group(2))
    fps = float(Fraction(fps_m.group(1)))
    rot = _ROT.search(err)
    rotation = 0
    if rot:
        rotation = int(round(float(rot.group(1) or rot.group(2)))) % 360
    if rotation in (90, 270):
        w, h = h, w
    return VideoInfo(w, h, fps, int(round(duration * fps)), duration, bool(a), True, rotation,
                     audio_rate, audio_channels)


def read_frames(path: Path | str, fps: Optional[float] = None, vf: Optional[str] = None,
                size: Optional[tuple[int, int]] = None, info: Optional[VideoInfo] = None) -> Iterator[np.ndarray]:
    """Yield RGB uint8 frames at constant frame rate (the clip's own unless `fps` is given).

    vf: an extra ffmpeg filter chain (crop, scale); size: the (w, h) it produces.
    ffmpeg applies rotation metadata itself before the filter. info: the clip's probe, if at hand.
    """
    path = Path(path)
    info = info or probe(path)
    if not info.has_video:
        raise MediaError(f"{path.name} has no video stream; choose a video of the speaker.")
    fps = fps or info.fps
    w, h = size or (info.width, info.height)
    cmd = [ffmpeg_exe(), "-hide_banner", "-loglevel", "error", "-nostdin", "-i", str(path), "-map", "0:v:0"]
    if vf:
        cmd += ["-vf", vf]
    cmd += ["-fps_mode", "cfr", "-r", f"{fps:.6f}", "-f", "rawvideo", "-pix_fmt", "rgb24", "-"]
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, bufsize=w * h * 3 * 4)
    nbytes = w * h * 3
    try:
        while True:
            buf = proc.stdout.read(nbytes)
            if len(buf) < nbytes:
                break
            yield np.frombuffer(buf, np.uint8).reshape(h, w, 3)
    finally:
        proc.stdout.close()
        proc.kill()
        proc.wait()
        proc.stderr.close()


def read_audio(path: Path | str, sr: int = 16000) -> np.ndarray:
    """Decode the first audio stream of any file to mono float32 at `sr`."""
    path = Path(path)
    _check_file(path)
    cmd = [ffmpeg_exe(), "-hide_banner", "-loglevel", "error", "-nostdin", "-i", str(path),
           "-map", "0:a:0", "-ac", "1", "-ar", str(sr), "-f", "f32le", "-"]
    proc = subprocess.run(cmd, capture_output=True)
    if proc.returncode != 0:
        msg = proc.stderr.decode(errors="replace")
        if "matches no streams" in msg:
            raise MediaError(f"{path.name} has no audio track; choose a file with speech.")
        raise MediaError(f"{path.name} is not audio ffmpeg can read; convert it to WAV or MP3.")
    wave = np.frombuffer(proc.stdout, np.float32).copy()
    if wave.size == 0:
        raise MediaError(f"{path.name} has an empty audio track; choose a file with speech.")
    return wave


def check_output(path: Path | str) -> Path:
    """Refuse, before any work, a video output that cannot be written; returns the path."""
    path = Path(path)
    if path.is_dir():
        raise MediaError(f"{path} is a folder; choose a file name for the video.")
    from .project import can_write_under

    parent, ok = can_write_under(path.parent)
    if not ok:
        raise MediaError(f"cannot write in {parent}; choose a folder you can write to.")
    return path


def _decode_audio_native(src: Path, dst: Path) -> None:
    """The first audio stream of `src` as float WAV at its own rate and channels."""
    info = probe(src)
    cmd = [ffmpeg_exe(), "-hide_banner", "-loglevel", "error", "-nostdin", "-y", "-i", str(src),
           "-map", "0:a:0", "-vn", "-c:a", "pcm_f32le"]
    if info.audio_rate and info.audio_rate not in AAC_RATES:
        cmd += ["-ar", "48000"]
    proc = subprocess.run(cmd + [str(dst)], capture_output=True)
    if proc.returncode != 0:
        raise MediaError(f"{src.name} is not audio ffmpeg can read; convert it to WAV or MP3.")


def _ours(d: Path) -> bool:
    """A work folder of an older VideoWriter (no lock file): only its video and audio inside."""
    return all(e.name.startswith(("video", "audio")) for e in d.iterdir())


def write_wav(path: Path | str, wave: np.ndarray, sr: int = 16000) -> None:
    import soundfile as sf

    sf.write(str(path), np.asarray(wave, np.float32), sr, subtype="PCM_16", format="WAV")


ENCODERS = ("auto", "x264", "nvenc")


@lru_cache(maxsize=1)
def nvenc_works() -> bool:
    """Whether this ffmpeg encodes H.264 on an NVIDIA GPU here: listed, and a test encode succeeds
    (the encoder is in the imageio-ffmpeg build whether or not a driver is there)."""
    exe = ffmpeg_exe()
    try:
        listed = subprocess.run([exe, "-hide_banner", "-encoders"], capture_output=True, text=True, timeout=30)
        if "h264_nvenc" not in listed.stdout:
            return False
        test = subprocess.run([exe, "-hide_banner", "-loglevel", "error", "-f", "lavfi", "-i",
                               "color=c=black:s=256x256:d=0.2", "-c:v", "h264_nvenc", "-f", "null", "-"],
                              capture_output=True, timeout=60)
        return test.returncode == 0
    except (OSError, subprocess.SubprocessError):
        return False


def choose_encoder(encoder: str = "auto", gpu: bool = False) -> str:
    """The ffmpeg H.264 encoder: auto takes the GPU's (h264_nvenc) when rendering on a CUDA GPU and
    ffmpeg can use it there, else x264; nvenc without a working one is refused in one line."""
    if encoder not in ENCODERS:
        raise MediaError(f"unknown encoder {encoder!r}; use one of {', '.join(ENCODERS)}.")
    if encoder == "x264" or (encoder == "auto" and not gpu):
        return "libx264"
    if nvenc_works():
        return "h264_nvenc"
    if encoder == "nvenc":
        raise MediaError("ffmpeg cannot encode on an NVIDIA GPU here (no GPU, driver or NVENC); "
                         "use --encoder x264.")
    return "libx264"


class VideoWriter:
    """Stream RGB frames to an H.264 + AAC MP4; the file appears under `path` only on success.

    with VideoWriter(out, (w, h), fps, audio_source=speech_file) as vw:
        for frame in frames: vw.write(frame)

    audio_source: a file whose first audio stream is delivered at its own rate and channels;
    audio: a mono waveform at audio_rate instead. audio_bitrate: AAC kb/s. codec: libx264 or
    h264_nvenc (choose_encoder); quality 1..10 maps to the same constant quality on both.
    """

    def __init__(self, path: Path | str, size: tuple[int, int], fps: float,
                 audio: Optional[np.ndarray] = None, audio_rate: int = 16000, quality: float = 8.0,
                 audio_source: Optional[Path | str] = None, audio_bitrate: int = 192,
                 codec: str = "libx264") -> None:
        self.path = Path(path)
        self.codec = codec
        self.size = (int(size[0]) // 2 * 2, int(size[1]) // 2 * 2)  # yuv420p needs even sides
        self.fps, self.audio, self.audio_rate, self.quality = fps, audio, audio_rate, quality
        self.audio_source, self.audio_bitrate = audio_source, int(audio_bitrate)
        self.frames_written = 0
        self._gen = None

    def __enter__(self) -> "VideoWriter":
        import imageio_ffmpeg

        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            remove_stale(self.path.parent, WORK_PREFIX, _ours)          # left by a killed export
            self._dir = WorkDir(self.path.parent, WORK_PREFIX)
        except OSError:
            raise MediaError(f"cannot write in {self.path.parent}; choose a folder you can write to.") from None
        try:
            self._tmp = self._dir.path / ("video" + (self.path.suffix or ".mp4"))
            audio_path = None
            if self.audio_source is not None:
                audio_path = str(self._dir.path / "audio.wav")
                _decode_audio_native(Path(self.audio_source), Path(audio_path))
            elif self.audio is not None:
                audio_path = str(self._dir.path / "audio.wav")
                write_wav(audio_path, self.audio, self.audio_rate)
            params = ["-movflags", "+faststart"] + (["-b:a", f"{self.audio_bitrate}k"] if audio_path else [])
            quality = self.quality
            if self.codec == "h264_nvenc":      # imageio maps quality to x264's CRF only; NVENC's -cq matches it
                params += ["-rc", "vbr", "-cq", str(int((1 - self.quality / 10) * 51)), "-b:v", "0",
                           "-preset", "p5"]
                quality = None
            self._gen = imageio_ffmpeg.write_frames(
                str(self._tmp), self.size, fps=self.fps, quality=quality, codec=self.codec,
                macro_block_size=1, audio_path=audio_path, audio_codec="aac" if audio_path else None,
                output_params=params, ffmpeg_log_level="error")
            self._gen.send(None)
        except BaseException:
            self._dir.cleanup()
            raise
        return self

    def write(self, frame: np.ndarray) -> None:
        frame = np.ascontiguousarray(frame[: self.size[1], : self.size[0], :3], dtype=np.uint8)
        self._gen.send(frame)
        self.frames_written += 1

    def __exit__(self, exc_type, exc, tb) -> None:
        try:
            self._gen.close()
            if exc_type is None:
                if self.frames_written == 0:
                    raise MediaError("nothing to export: no frames were rendered.")
                self._tmp.replace(self.path)
        finally:
            self._dir.cleanup()
