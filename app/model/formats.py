"""How the app writes lengths, everywhere: minutes:seconds.tenths and the frame count."""
from __future__ import annotations


def duration_text(frames: int, fps: float) -> str:
    """'0:20.0 (600 frames)': the one format for a clip's or a span's length."""
    secs = frames / fps if fps > 0 else 0.0
    mins, secs = divmod(round(secs, 1), 60)
    return f"{int(mins)}:{secs:04.1f} ({int(frames)} frames)"
