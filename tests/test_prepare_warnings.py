"""Issue 13, items 9 and 10: prepare says where the face is missing, and that a track is silent."""
from __future__ import annotations

import subprocess

import pytest

from speech2lip.core.cli import main
from speech2lip.core.media import ffmpeg_exe


@pytest.fixture(scope="module")
def prepared_gappy(media, tmp_path_factory):
    """8 s of the speaker, then 3 s without a face (27 % of the frames), over a silent track."""
    d = tmp_path_factory.mktemp("gappy")
    clip = d / "gappy.mp4"
    subprocess.run([ffmpeg_exe(), "-y", "-loglevel", "error", "-i", str(media["obama_a"]),
                    "-f", "lavfi", "-i", "testsrc2=size=256x256:rate=30:duration=3",
                    "-f", "lavfi", "-i", "anullsrc=r=16000:cl=mono",
                    "-filter_complex", "[0:v]trim=0:8,setpts=PTS-STARTPTS,fps=30,format=yuv420p[a];"
                    "[1:v]fps=30,format=yuv420p[b];[a][b]concat=n=2:v=1[v]",
                    "-map", "[v]", "-map", "2:a", "-t", "11", "-c:a", "aac", str(clip)], check=True)
    return clip, d / "project"


def test_missing_face_ranges_and_silent_track_are_reported(prepared_gappy, capsys):
    from speech2lip.core.project import Project

    clip, target = prepared_gappy
    assert main(["--quiet", "prepare", str(clip), "--project", str(target)]) == 0
    out = capsys.readouterr().out
    warnings = [line for line in out.splitlines() if "warning:" in line]
    # Item 9: how many frames and where (the last 3 s), and the ranges kept for the editor's timeline.
    face = [w for w in warnings if "no face in" in w]
    assert len(face) == 1 and "0:08." in face[0] and "0:11.0" in face[0]
    gaps = Project(target).manifest.stats["faceless_ranges"]
    assert gaps and gaps[-1][1] == Project(target).n_frames - 1 and abs(gaps[-1][0] - 240) <= 3
    # Item 10: a silent track is treated as a missing one.
    assert any("audio track is silent" in w and "sync training needs speech" in w for w in warnings)
