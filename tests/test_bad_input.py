"""Every way a user can feed prepare bad input: one line saying what to do, exit status 2, nothing half-written."""
from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest

from speech2lip.core.cli import main
from speech2lip.core.media import ffmpeg_exe


def ff(*args: str) -> None:
    subprocess.run([ffmpeg_exe(), "-y", "-loglevel", "error", *args], check=True)


@pytest.fixture(scope="module")
def clips(media, speech, tmp_path_factory):
    d = tmp_path_factory.mktemp("bad")
    src = str(media["obama_a"])
    c = {}
    c["text"] = d / "notes.mp4"
    c["text"].write_text("this is not a video\n" * 50)
    c["empty"] = d / "empty.mp4"
    c["empty"].write_bytes(b"")
    c["truncated"] = d / "truncated.mp4"
    c["truncated"].write_bytes(Path(src).read_bytes()[: 40_000])
    c["audio_only"] = speech["jfk"]
    c["short"] = d / "short.mp4"
    ff("-i", src, "-t", "3", c["short"].as_posix())
    c["no_face"] = d / "no_face.mp4"
    ff("-f", "lavfi", "-i", "testsrc2=size=256x256:rate=30:duration=6", "-pix_fmt", "yuv420p", c["no_face"].as_posix())
    c["few_faces"] = d / "few_faces.mp4"
    ff("-i", src, "-f", "lavfi", "-i", "testsrc2=size=256x256:rate=30:duration=6", "-filter_complex",
       "[0:v]trim=0:3,setpts=PTS-STARTPTS,fps=30,format=yuv420p[a];[1:v]fps=30,format=yuv420p[b];"
       "[a][b]concat=n=2:v=1[v]", "-map", "[v]", c["few_faces"].as_posix())
    c["small_face"] = d / "small_face.mp4"
    ff("-i", src, "-t", "6", "-vf", "scale=56:56,pad=256:256:100:100", "-an", c["small_face"].as_posix())
    c["no_audio"] = d / "no_audio.mp4"
    ff("-i", src, "-t", "6", "-an", "-c:v", "copy", c["no_audio"].as_posix())
    return c


def run(capsys, *argv) -> tuple[int, str]:
    code = main(["--quiet", *map(str, argv)])
    err = capsys.readouterr().err.strip()
    return code, err


@pytest.mark.parametrize("name, expected", [
    ("text", "not a video ffmpeg can read"),
    ("empty", "is empty (0 bytes)"),
    ("truncated", "truncated"),
    ("audio_only", "has no video stream"),
    ("short", "a clip of at least 5 s"),
    ("no_face", "no face found"),
    ("few_faces", "a face was found in only"),
    ("small_face", "px wide (need 64)"),
])
def test_bad_clip_gives_one_line_and_status_2(clips, tmp_path, capsys, name, expected):
    target = tmp_path / "project"
    code, err = run(capsys, "prepare", clips[name], "--project", target)
    assert code == 2
    assert expected in err, err
    assert len(err.splitlines()) == 1, err
    assert not target.exists(), "no half-written project"
    assert list(tmp_path.iterdir()) == [], "no temporary folders left behind"


def test_missing_audio_is_allowed_with_a_warning(clips, tmp_path, capsys):
    code = main(["--quiet", "prepare", str(clips["no_audio"]), "--project", str(tmp_path / "p")])
    out = capsys.readouterr().out
    assert code == 0
    assert "sync training needs speech" in out
    assert (tmp_path / "p" / "project.json").exists()
    assert not (tmp_path / "p" / "audio.wav").exists()


def test_non_empty_target_is_refused_unless_forced(clips, tmp_path, capsys):
    target = tmp_path / "p"
    target.mkdir()
    keep = target / "my_notes.txt"
    keep.write_text("precious")
    code, err = run(capsys, "prepare", clips["no_audio"], "--project", target)
    assert code == 2 and "not empty" in err and "--force" in err
    assert keep.read_text() == "precious"
    code, _ = run(capsys, "prepare", clips["no_audio"], "--project", target, "--force")
    assert code == 0 and (target / "project.json").exists()


def test_read_only_target_is_refused(clips, capsys):
    # /proc is read-only even for root, unlike a chmod-ed folder.
    code, err = run(capsys, "prepare", clips["no_audio"], "--project", "/proc/speech2lip-test-project")
    assert code == 2 and "cannot write" in err


def test_non_ascii_paths_work(media, tmp_path, capsys):
    folder = tmp_path / "vidéos 日本"
    folder.mkdir()
    clip = folder / "discours_été.mp4"
    shutil.copy(media["obama_c"], clip)
    target = tmp_path / "projet été"
    code = main(["--quiet", "prepare", str(clip), "--project", str(target)])
    assert code == 0, capsys.readouterr().err
    from speech2lip.core.project import Project

    p = Project(target)
    assert p.n_frames == 600 and p.manifest.source["name"] == "discours_été.mp4"


def test_cancel_leaves_nothing(media, tmp_path):
    from speech2lip.core.jobs import CancelToken, Cancelled, Progress
    from speech2lip.core.prepare.job import prepare

    token = CancelToken()

    def progress(p: Progress) -> None:
        if p.stage == "faces" and p.done > 100:
            token.cancel()

    with pytest.raises(Cancelled):
        prepare(media["obama_a"], tmp_path / "p", progress=progress, cancel=token)
    assert list(tmp_path.iterdir()) == []
