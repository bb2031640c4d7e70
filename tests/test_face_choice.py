"""Issue 13, item 7: with two faces, prepare takes the one speaking, says so, and lets the user choose.

The clips are two real speakers side by side (obama_address_a on the left, reagan_address on the
right, 12 s), once with the left one's speech and once with the right one's. Reagan's face is the
larger, so the old rule (the largest face) took the wrong person on the first clip.
"""
from __future__ import annotations

import json
import shutil

import numpy as np
import pytest

from speech2lip.core.prepare import face_choice as FC
from speech2lip.core.prepare import tracking as T
from speech2lip.core.cli import main
from speech2lip.core.errors import FaceError
from speech2lip.core.prepare.faces import FaceTracks
from speech2lip.core.project import Project, ProjectFolder
from speech2lip.core.prepare.tracking import Face

from conftest import side_by_side

SIDES = {0: "left", 1: "right"}


@pytest.fixture(scope="module")
def pairs(media, tmp_path_factory):
    """{side of the speaker: (clip, project prepared by the CLI, what it printed)}."""
    d = tmp_path_factory.mktemp("two_faces")
    out = {}
    for side in SIDES:
        clip = side_by_side(d / f"speaker_{SIDES[side]}.mp4", media["obama_a"], media["reagan"], audio_from=side)
        out[side] = (clip, d / f"project_{SIDES[side]}")
    return out


@pytest.fixture(scope="module")
def prepared(pairs):
    import contextlib
    import io

    got = {}
    for side, (clip, root) in pairs.items():
        buf = io.StringIO()
        with contextlib.redirect_stdout(buf):
            assert main(["--quiet", "prepare", str(clip), "--project", str(root)]) == 0
        got[side] = (Project(root), buf.getvalue())
    return got


@pytest.mark.slow
@pytest.mark.parametrize("side", [0, 1], ids=["left_speaks", "right_speaks"])
def test_the_speaking_face_is_chosen(prepared, side):
    project, printed = prepared[side]
    s = project.manifest.stats
    faces, choice = s["faces"], s["face_choice"]
    assert [f["position"] for f in faces] == ["left", "right"] and s["several_faces"]
    assert choice["chosen"] == side + 1 and choice["by"] == "speaking" and choice["asked"] == "speaking"
    speaker, other = faces[side]["sync"], faces[1 - side]["sync"]
    print(f"{SIDES[side]} speaks: sync {speaker:.3f} against {other:.3f}")
    assert speaker >= FC.CLEAR_SYNC and speaker - other >= FC.CLEAR_MARGIN
    # The project follows that face: the crop sits on its half of the 512-pixel frame.
    x0, _, w, _ = project.manifest.crop
    assert (x0 + w / 2 < 256) == (side == 0)
    # Said in one line, and shown in a picture.
    lines = [line for line in printed.splitlines() if line.strip().startswith("chosen ")]
    assert len(lines) == 1, printed
    assert f"face {side + 1} ({SIDES[side]}) of 2: its mouth follows the speech" in lines[0]
    assert "--face" in lines[0] and str(project.faces_picture) in lines[0]
    import cv2

    pic = cv2.imread(str(project.faces_picture))
    assert pic is not None and pic.shape[1] == 512 and pic.shape[0] > 256


@pytest.mark.slow
def test_a_face_number_out_of_range_is_one_line_and_keeps_the_project(pairs, prepared, tmp_path, capsys):
    clip, _ = pairs[0]
    root = tmp_path / "kept"
    shutil.copytree(prepared[0][0].root, root)
    before = {p.relative_to(root): p.stat().st_mtime_ns for p in root.rglob("*")}
    assert main(["--quiet", "prepare", str(clip), "--project", str(root), "--force", "--face", "3"]) == 2
    err = [line for line in capsys.readouterr().err.splitlines() if line.strip()]
    assert len(err) == 1, err
    assert "--face 3, but the clip has 2 faces: 1 (left, " in err[0] and ", 2 (right, " in err[0]
    assert "choose 1 or 2" in err[0]
    assert {p.relative_to(root): p.stat().st_mtime_ns for p in root.rglob("*")} == before    # nothing lost
    assert [p.name for p in tmp_path.iterdir()] == ["kept"]                      # no work folder left


def test_an_unknown_face_word_fails_before_any_work(pairs, tmp_path, capsys):
    clip, _ = pairs[0]
    assert main(["--quiet", "prepare", str(clip), "--project", str(tmp_path / "p"), "--face", "middle"]) == 2
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and "--face 'middle' is not a choice" in err and "speaking" in err
    assert not list(tmp_path.iterdir())


# --- the choice itself, without media ----------------------------------------------------------

def _faces(syncs, widths=(100.0, 120.0)):
    out = [FC.FoundFace(i + 1, i, p, 1.0, w, [0, 0, w, w]) for i, (p, w) in enumerate(zip(("left", "right"), widths))]
    for f, s in zip(out, syncs):
        f.sync = s
    return out


def test_choice_rules():
    c = FC.choose(_faces([0.40, 0.08]), "speaking", "pic.jpg")
    assert c.face.number == 1 and c.by == "speaking" and c.warning is None
    assert c.reason == "face 1 (left) of 2: its mouth follows the speech (sync 0.40; face 2: 0.08)"
    # Too close to call, or no speech: the largest, with a warning that says where to look and what to do.
    for syncs in ([0.20, 0.16], [None, None]):
        c = FC.choose(_faces(syncs), "speaking", "pic.jpg")
        assert c.face.number == 2 and c.by == "largest" and "pic.jpg" in c.warning and "--face" in c.warning
    # Asked: obeyed, with a warning when another face is clearly the one speaking.
    c = FC.choose(_faces([0.40, 0.08]), "right", "pic.jpg")
    assert c.face.number == 2 and c.by == "asked" and "face 1 (left) follows the speech far better" in c.warning
    assert FC.choose(_faces([0.40, 0.08]), "1", "pic.jpg").warning is None
    assert FC.choose(_faces([None, None]), "largest", "pic.jpg").face.number == 2
    assert FC.choose(_faces([None])[:1], "left", "pic.jpg").by == "only"
    with pytest.raises(FaceError, match=r"only 1 face .* leave --face out"):
        FC.choose(_faces([None])[:1], "2", "pic.jpg")
    assert [FC.parse_face(v) for v in ("Speaking", " left", "02", 3, None)] == ["speaking", "left", "2", "3",
                                                                                "speaking"]
    for bad in ("0", "-1", "top", ""):
        with pytest.raises(FaceError):
            FC.parse_face(bad)


class _Scripted:
    """A backend that returns given faces, in a given order, frame after frame."""

    def __init__(self, frames):
        self.frames = iter(frames)

    def faces(self, rgb):
        return [Face(lm, 1.0) for lm in next(self.frames)]

    def close(self):
        pass


def _face_at(x: float) -> np.ndarray:
    lm = np.zeros((478, 3), np.float32)
    lm[:, 0] = x + np.linspace(-40, 40, 478)
    lm[:, 1] = 100 + np.linspace(-50, 50, 478)
    lm[33, :2], lm[263, :2] = (x - 30, 90), (x + 30, 90)        # eye corners: 60 px apart
    return lm


def test_tracks_keep_who_is_who_whatever_order_the_backend_gives(monkeypatch):
    a, b = _face_at(100), _face_at(400)
    script = [[a, b], [b + 3, a + 3], [a + 6, a + 7], [b + 9, a + 9], [_face_at(700)]]   # swapped, b gone, a twice
    monkeypatch.setattr(T, "open_backend", lambda *a, **k: _Scripted(script))
    with FaceTracks() as tracks:
        got = [tracks.process(np.zeros((8, 8, 3), np.uint8)) for _ in script]
    assert [sorted(g) for g in got] == [[0, 1], [0, 1], [0], [0, 1], [2]]           # a stranger gets a new track
    assert all(abs(g[0][:, 0].mean() - 100) < 10 for g in got[:4])
    lm = np.full((3, 5, 478, 3), np.nan, np.float32)
    seen = np.zeros((3, 5), bool)
    for i, g in enumerate(got):
        for t, pts in g.items():
            lm[t, i], seen[t, i] = pts, True
    faces = FC.found_faces(lm, seen)
    assert [(f.number, f.track, f.position) for f in faces] == [(1, 0, "left"), (2, 1, "middle"), (3, 2, "right")]
    assert json.dumps(FC.record(faces, FC.Choice(faces[0], "asked", "why"), "1"))       # project.json can hold it
    assert FC.found_faces(lm[:1] * np.nan, seen[:1] & False) == []                     # no face: nothing offered
    assert ProjectFolder("p").faces_picture.parent == ProjectFolder("p").diagnostics
