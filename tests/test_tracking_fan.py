"""face-alignment (FAN) as a tracker backend, without its weights and without the network.

The library itself is faked in sys.modules (CI installs only `.[test]`): the fake has the
library's shape (api.models_urls, a detector module with models_urls, FaceAlignment), so
the adapter's own code runs: the cache check, the construction, the tracking loop, the
index mapping and the LMD on FAN's lips. Where the real library is installed, its error
path and its real loading code (with random weights saved in a private cache) run too.
"""
from __future__ import annotations

import enum
import importlib.util
import inspect
import sys
import types

import numpy as np
import pytest
import torch

from speech2lip.core.prepare import faces as F
from speech2lip.core.prepare import geometry as G
from speech2lip.core.evaluation import metrics as M
from speech2lip.core.prepare.tracking import Face, TrackerError
from speech2lip.core.prepare.tracking import fan as FAN

FAN_URL = "https://example.invalid/python-fan/2DFAN4-0123456789.pth.tar"
SFD_URL = "https://example.invalid/python-fan/s3fd-0123456789.pth"


@pytest.fixture
def hub(tmp_path, monkeypatch):
    """An empty torch hub folder of our own; nothing outside it can be touched."""
    d = tmp_path / "hub"
    d.mkdir()
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch_home"))
    monkeypatch.setattr(torch.hub, "_hub_dir", str(d))
    return d


def face68(i: int) -> np.ndarray:
    """(68, 2) known points for frame i: a face template shifted by i pixels, mouth open by i."""
    pts = np.zeros((68, 2), np.float32)
    pts[:, 0] = np.linspace(60, 190, 68)
    pts[:, 1] = 120
    pts[36], pts[45] = (80, 100), (176, 100)                # eye corners 96 px apart
    pts[62], pts[66] = (128, 170), (128, 172 + i)            # inner lips 2 + i px apart
    return pts + i


class FakeFaceAlignment:
    """The library's FaceAlignment as the adapter uses it. A frame's id is its pixel [0, 0, 0]:
    ids in `faceless` have no face, ids in `two` have a second, smaller face."""

    made: list = []
    faceless = {2}
    two = {1}

    def __init__(self, landmarks_type, device="cuda", face_detector="sfd", flip_input=True, compile=True, **kw):
        FakeFaceAlignment.made.append({"type": landmarks_type, "device": device, "detector": face_detector,
                                       "flip_input": flip_input, "compile": compile})
        self.face_detector = types.SimpleNamespace(detect_from_image=self._detect)
        self.calls = []

    def _detect(self, image):
        i = int(image[0, 0, 0])
        if i in self.faceless:
            return []
        boxes = [np.array([40 + i, 40 + i, 200 + i, 220 + i, 0.99], np.float32)]
        if i in self.two:
            boxes.insert(0, np.array([0, 0, 30, 30, 0.8], np.float32))
        return boxes

    def get_landmarks_from_image(self, image, detected_faces=None):
        i = int(image[0, 0, 0])
        self.calls.append((i, [np.asarray(b).copy() for b in detected_faces]))
        return [face68(i) for _ in detected_faces]


def fake_library(monkeypatch):
    """A stand-in `face_alignment` package with the real one's layout, registered in sys.modules."""
    fa = types.ModuleType("face_alignment")
    api = types.ModuleType("face_alignment.api")
    api.models_urls = {"2DFAN-4": FAN_URL, "3DFAN-4": FAN_URL.replace("2D", "3D")}
    detection = types.ModuleType("face_alignment.detection")
    sfd = types.ModuleType("face_alignment.detection.sfd")
    sfd_detector = types.ModuleType("face_alignment.detection.sfd.sfd_detector")
    sfd_detector.models_urls = {"s3fd": SFD_URL}
    detector_class = type("SFDDetector", (), {"__module__": sfd_detector.__name__})
    sfd.FaceDetector = sfd_detector.SFDDetector = detector_class
    fa.api, fa.detection, detection.sfd, sfd.sfd_detector = api, detection, sfd, sfd_detector
    fa.LandmarksType = enum.IntEnum("LandmarksType", {"TWO_D": 1, "TWO_HALF_D": 2, "THREE_D": 3})
    fa.NetworkSize = enum.IntEnum("NetworkSize", {"LARGE": 4})
    fa.FaceAlignment = FakeFaceAlignment
    for m in (fa, api, detection, sfd, sfd_detector):
        monkeypatch.setitem(sys.modules, m.__name__, m)
    FakeFaceAlignment.made = []
    return fa


def with_weights(hub) -> None:
    (hub / "checkpoints").mkdir()
    for url in (FAN_URL, SFD_URL):
        (hub / "checkpoints" / FAN.file_name(url)).write_bytes(b"weights")


def frames(ids) -> list[np.ndarray]:
    return [np.full((256, 256, 3), i, np.uint8) for i in ids]


# --- the error paths -------------------------------------------------------------------------

def test_missing_weights_give_one_line_naming_the_files_and_folder_and_write_nothing(hub, monkeypatch, tmp_path):
    fake_library(monkeypatch)
    before = sorted(p.relative_to(tmp_path) for p in tmp_path.rglob("*"))
    with pytest.raises(TrackerError) as err:
        FAN.FanBackend(device="cpu")
    msg = str(err.value)
    assert "\n" not in msg
    assert str(hub / "checkpoints") in msg
    assert "2DFAN4-0123456789.pth.tar" in msg and "s3fd-0123456789.pth" in msg
    assert FAN_URL in msg and "--tracker facemesh" in msg and FAN.FETCH in msg
    assert FakeFaceAlignment.made == []                               # the library never got to download
    assert sorted(p.relative_to(tmp_path) for p in tmp_path.rglob("*")) == before
    assert TrackerError.exit_code == 2


def test_one_missing_file_is_named_alone_and_an_empty_file_counts_as_missing(hub, monkeypatch):
    fake_library(monkeypatch)
    with_weights(hub)
    (hub / "checkpoints" / "s3fd-0123456789.pth").write_bytes(b"")           # a copy that failed
    with pytest.raises(TrackerError, match=r"missing from .*: s3fd-0123456789\.pth\. ") as err:
        FAN.FanBackend(device="cpu")
    assert "2DFAN4" not in str(err.value).split("Fetch")[0]


def test_without_the_package_the_line_says_how_to_install_it(monkeypatch):
    monkeypatch.setitem(sys.modules, "face_alignment", None)                 # import fails
    with pytest.raises(TrackerError, match=r'pip install "speech2lip-studio\[fan\]"') as err:
        FAN.FanBackend(device="cpu")
    assert "\n" not in str(err.value)


def test_an_unknown_detector_and_a_failing_load_are_one_line_each(hub, monkeypatch):
    fake_library(monkeypatch)
    with pytest.raises(TrackerError, match="unknown face detector 'dlib'"):
        FAN.FanBackend(device="cpu", detector="dlib")
    with_weights(hub)

    def broken(*a, **k):
        raise RuntimeError("PytorchStreamReader failed reading zip archive\nmore detail")

    monkeypatch.setattr(FakeFaceAlignment, "__init__", broken)
    with pytest.raises(TrackerError, match="failed to load its weights") as err:
        FAN.FanBackend(device="cpu")
    assert "\n" not in str(err.value) and "PytorchStreamReader" in str(err.value)


def test_fetch_lets_the_library_download_and_leaves_no_folder_when_it_cannot(hub, monkeypatch):
    fake_library(monkeypatch)

    def offline(self, *a, **k):
        (hub / "checkpoints").mkdir(exist_ok=True)           # the library makes the folder, then fails
        raise OSError("<urlopen error [Errno -3] Temporary failure in name resolution>")

    monkeypatch.setattr(FakeFaceAlignment, "__init__", offline)
    with pytest.raises(TrackerError, match="could not fetch face-alignment's weights") as err:
        FAN.fetch_weights()
    assert "\n" not in str(err.value) and "2DFAN4-0123456789.pth.tar" in str(err.value)
    assert list(hub.iterdir()) == []

    def online(self, *a, **k):
        with_weights(hub)

    monkeypatch.setattr(FakeFaceAlignment, "__init__", online)
    paths = FAN.fetch_weights()
    assert [p.name for p in paths] == ["2DFAN4-0123456789.pth.tar", "s3fd-0123456789.pth"]
    assert all(p.is_file() for p in paths)


# --- the adapter ----------------------------------------------------------------------------

def test_backend_builds_the_library_in_2d_eager_mode_and_gives_68_points_per_face(hub, monkeypatch):
    fa = fake_library(monkeypatch)
    with_weights(hub)
    with FAN.FanBackend(device="cpu") as fan:
        assert (fan.name, fan.points) == ("fan", 68)
        faces = fan.faces(frames([1])[0])
    assert FakeFaceAlignment.made == [{"type": fa.LandmarksType.TWO_D, "device": "cpu", "detector": "sfd",
                                       "flip_input": False, "compile": False}]
    assert len(faces) == 2 and all(isinstance(f, Face) for f in faces)
    for f in faces:
        assert f.landmarks.shape == (68, 3) and f.landmarks.dtype == np.float32
        assert (f.landmarks[:, 2] == 0).all() and 0 <= f.score <= 1
    np.testing.assert_array_equal(faces[0].landmarks[:, :2], face68(1))
    assert sorted(f.score for f in faces) == pytest.approx([0.8, 0.99])


def test_fan_track_follows_one_face_and_gives_nan_where_there_is_none(hub, monkeypatch):
    fake_library(monkeypatch)
    with_weights(hub)
    seen = []
    lm = FAN.fan_track(frames([0, 1, 2, 3]), progress=seen.append)
    assert lm.shape == (4, 68, 3) and lm.dtype == np.float32
    assert np.isnan(lm[2]).all() and np.isfinite(lm[[0, 1, 3]]).all()
    for i in (0, 1, 3):
        np.testing.assert_array_equal(lm[i, :, :2], face68(i))
    assert len(FakeFaceAlignment.made) == 1 and seen == []          # progress every 16 frames
    assert FAN.fan_track([]).shape == (0, 68, 3)


def test_track_follows_the_face_it_started_with(hub, monkeypatch):
    fake_library(monkeypatch)
    with_weights(hub)
    with FAN.FanBackend(device="cpu") as fan:
        _, boxes = fan.track(frames([0, 1]))
        read = [c[1][0][:4] for c in fan._fa.calls]
    # Frame 1 also holds a small face in the corner; the one near frame 0's face was read.
    np.testing.assert_array_equal(read[1], [41, 41, 201, 221])
    np.testing.assert_allclose(boxes[1], [41, 41, 201, 221, 0.99], rtol=1e-6)


def test_track_reuses_given_boxes_without_running_the_detector(hub, monkeypatch):
    fake_library(monkeypatch)
    with_weights(hub)
    with FAN.FanBackend(device="cpu") as fan:
        real, boxes = fan.track(frames([0, 2, 3]))
        assert boxes.shape == (3, 5) and np.isnan(boxes[1]).all()
        fan._fa.face_detector.detect_from_image = lambda img: pytest.fail("the detector ran")
        other, _ = fan.track(frames([5, 6, 7]), boxes=boxes)
        given = [c[1][0][:4] for c in fan._fa.calls[-2:]]
    assert np.isnan(other[1]).all() and np.isfinite(other[[0, 2]]).all()
    np.testing.assert_array_equal(given[0], boxes[0, :4])
    np.testing.assert_array_equal(given[1], boxes[2, :4])


def test_largest_face_first_then_the_nearest():
    boxes = np.array([[0, 0, 10, 10, 1], [50, 50, 150, 150, 1], [200, 200, 230, 230, 1]], np.float32)
    assert FAN._pick(boxes, None) == 1
    assert FAN._pick(boxes, np.array([210.0, 210.0])) == 2


def test_weight_files_follow_the_librarys_urls_for_either_layout(monkeypatch):
    fa = fake_library(monkeypatch)
    assert [FAN.file_name(u) for u in FAN.weight_urls(fa)] == ["2DFAN4-0123456789.pth.tar", "s3fd-0123456789.pth"]
    # 1.4 keeps one table per torch minor version, with a default for the others.
    version = torch.__version__.rsplit(".", 1)[0]
    fa.api.models_urls = {version: {"2DFAN-4": "https://x/2DFAN4_v-aa.zip"}, "0.1": {"2DFAN-4": "https://x/o.zip"}}
    fa.api.default_model_urls = {"2DFAN-4": "https://x/2DFAN4-default.zip"}
    assert FAN.file_name(FAN.weight_urls(fa)[0]) == ("2DFAN4-default.zip" if "dev" in torch.__version__
                                                    else "2DFAN4_v-aa.zip")
    assert FAN.file_name("https://github.com/a/b/blob/master/blazeface.pth?raw=true") == "blazeface.pth"


# --- the index mapping ---------------------------------------------------------------------

def test_the_68_point_roles_and_their_mediapipe_counterparts():
    assert FAN.FAN_LIPS == list(range(48, 68)) and len(FAN.FAN_LIPS_OUTER) == 12 and len(FAN.FAN_LIPS_INNER) == 8
    m = FAN.TO_MEDIAPIPE
    assert tuple(m[i] for i in FAN.FAN_EYE_OUTER) == F.EYE_OUTER
    assert tuple(m[i] for i in FAN.FAN_INNER_LIP_GAP) == F.INNER_LIP_GAP
    assert (m[FAN.FAN_NOSE_BOTTOM], m[FAN.FAN_CHIN]) == (F.NOSE_BOTTOM, F.CHIN)
    assert tuple(m[i] for i in FAN.FAN_LIP_MIDPOINTS) == (M.LIP_TOP, M.LIP_BOTTOM)
    assert all(m[i] in F.LIPS_OUTER for i in (*FAN.FAN_MOUTH_CORNERS, *FAN.FAN_LIP_MIDPOINTS))
    assert all(m[i] in F.LIPS_INNER for i in (60, 62, 64, 66))


def test_mouth_opening_of_the_68_layout_is_the_inner_gap_over_the_eye_corners():
    lm = np.stack([face68(0), face68(6)])
    # By hand: eyes (80,100)-(176,100) are 96 px apart; inner lips 62, 66 are 2 and 8 px apart.
    np.testing.assert_allclose(FAN.inter_ocular(lm), [96, 96])
    np.testing.assert_allclose(FAN.mouth_opening(lm), [2 / 96, 8 / 96], rtol=1e-6)


def test_lmd_on_fans_lips_uses_points_48_to_67_over_the_real_eye_distance():
    real = np.stack([face68(0), face68(0), face68(0)]).astype(np.float32)
    real = np.concatenate([real, np.zeros((3, 68, 1), np.float32)], axis=2)
    gen = real.copy()
    gen[0, 48:68, 0] += 4.8                  # every lip point 4.8 px off: LMD 4.8 / 96
    gen[1, :48, :2] += 50                    # everything but the lips moved: not the lips' distance
    gen[2] = np.nan                          # no face found on the generated frame
    out = M.lip_distance(gen, real, "fan68")
    np.testing.assert_allclose(out[:2], [0.05, 0.0], atol=1e-7)
    assert np.isnan(out[2])
    with pytest.raises(ValueError):
        M.lip_distance(gen, real, "fan5")


def test_eval_reads_every_method_inside_the_real_frames_boxes(hub, monkeypatch):
    from speech2lip.core.evaluation import evaluate as E

    fake_library(monkeypatch)
    with_weights(hub)
    with FAN.FanBackend(device="cpu") as fan:
        lips = E.fan_lip_tracks(fan, {"real": np.stack(frames([0, 2, 3])), "model": np.stack(frames([4, 5, 6]))})
    assert list(lips) == ["real", "model"] and lips["model"].shape == (3, 68, 3)
    assert np.isnan(lips["model"][1]).all()              # no real face there: nothing to compare
    lmd = M.lip_distance(lips["model"], lips["real"], "fan68")
    assert np.isnan(lmd[1]) and (lmd[[0, 2]] > 0).all()
    manifest = types.SimpleNamespace(tracker="fan")
    assert E.lmd_points(types.SimpleNamespace(manifest=manifest)) == "fan68"
    assert E.lmd_points(types.SimpleNamespace(manifest=types.SimpleNamespace())) == "facemesh40"


# --- the mouth box from FAN's lips -------------------------------------------------------

def _ellipse(n: int, cx: float, cy: float, rx: float, ry: float) -> np.ndarray:
    a = np.linspace(0, 2 * np.pi, n, endpoint=False)
    return np.stack([cx + rx * np.cos(a), cy + ry * np.sin(a)], 1)


def test_mouth_box_68_is_the_mesh_rule_on_fans_lips_nose_and_chin():
    canon = np.zeros((478, 3), np.float32)
    canon[F.LIPS_OUTER, :2] = _ellipse(20, 128, 170, 24, 10)
    canon[F.NOSE_BOTTOM, :2] = (128, 140)
    canon[F.CHIN, :2] = (128, 215)
    c68 = np.zeros((68, 3), np.float32)
    c68[FAN.FAN_LIPS_OUTER, :2] = _ellipse(12, 128, 170, 24, 10)     # same extremes, same centre
    c68[FAN.FAN_NOSE_BOTTOM, :2] = (128, 140)
    c68[FAN.FAN_CHIN, :2] = (128, 215)
    box = G.mouth_box_68(c68, 256)
    assert box == G.mouth_box(canon, 256)
    x0, y0, w, h = box
    assert w % 8 == 0 and h % 8 == 0 and 0 <= x0 and x0 + w <= 256 and y0 + h <= 256
    assert x0 < 104 and x0 + w > 152 and y0 < 160 and y0 + h > 215            # lips and chin inside


def test_canonical_68_is_the_canonical_frames_own_points_or_the_nearest_mapped_back():
    rng = np.random.default_rng(0)
    canon = np.zeros((478, 3), np.float32)
    canon[F.LIPS, 2] = 7.0
    c68 = np.concatenate([rng.uniform(60, 200, (68, 2)), np.full((68, 1), 7.0)], 1).astype(np.float32)
    poses = np.zeros((4, 3, 4), np.float32)
    for k, ang in enumerate(np.radians([0, 8, -5, 12])):
        c, s = np.cos(ang), np.sin(ang)
        poses[k, :, :3] = 1.05 * np.array([[c, 0, s], [0, 1, 0], [-s, 0, c]]) @ np.array(
            [[np.cos(ang / 2), -np.sin(ang / 2), 0], [np.sin(ang / 2), np.cos(ang / 2), 0], [0, 0, 1]])
        poses[k, :, 3] = (3 * k, -2 * k, 0)
    frames68 = G.apply_pose(poses, c68[None]).astype(np.float32)
    frames68[..., 2] = 0                                              # FAN is 2D
    np.testing.assert_array_equal(G.canonical_68(frames68, poses, 1, canon), frames68[1])
    frames68[1] = np.nan                                              # no FAN face on the canonical frame
    got = G.canonical_68(frames68, poses, 1, canon)
    np.testing.assert_allclose(got[:, :2], c68[:, :2], atol=1e-3)     # frame 0's points, mapped back
    with pytest.raises(ValueError):
        G.canonical_68(np.full((2, 68, 3), np.nan, np.float32), poses[:2], 0, canon)


# --- the real library, where it is installed -------------------------------------------------

real_library = pytest.mark.skipif(importlib.util.find_spec("face_alignment") is None,
                                  reason="face-alignment is not installed (the [fan] extra)")


@real_library
def test_real_library_without_weights_names_its_own_files_and_writes_nothing(hub, tmp_path):
    before = sorted(tmp_path.rglob("*"))
    with pytest.raises(TrackerError) as err:
        FAN.FanBackend(device="cpu")
    msg = str(err.value)
    fa = FAN._library()
    for url in FAN.weight_urls(fa):
        assert FAN.file_name(url) in msg
    assert "2DFAN4" in msg and "s3fd" in msg and str(hub / "checkpoints") in msg and "\n" not in msg
    assert sorted(tmp_path.rglob("*")) == before
    with pytest.raises(TrackerError, match="blazeface.pth, anchors.npy"):
        FAN.FanBackend(device="cpu", detector="blazeface")


@pytest.mark.slow
@real_library
def test_real_library_loads_weights_from_the_cache_through_its_own_code(hub, monkeypatch):
    """Random weights in the library's formats stand in for the downloaded ones: the real
    FaceAlignment loads them offline, and the adapter returns its shapes."""
    fa = FAN._library()
    if "compile" not in inspect.signature(fa.FaceAlignment.__init__).parameters:
        pytest.skip("face-alignment < 1.5 ships TorchScript archives, which random weights cannot stand in for")
    from face_alignment.detection.sfd.net_s3fd import s3fd
    from face_alignment.models import FAN as FanNet

    import face_alignment.utils

    no_download = lambda *a, **k: pytest.fail("download attempted")      # noqa: E731
    monkeypatch.setattr(torch.hub, "download_url_to_file", no_download)
    monkeypatch.setattr(face_alignment.utils, "download_url_to_file", no_download)
    (hub / "checkpoints").mkdir()
    torch.manual_seed(0)
    fan_url, sfd_url = FAN.weight_urls(fa)
    torch.save(FanNet(4).state_dict(), hub / "checkpoints" / FAN.file_name(fan_url))
    torch.save(s3fd().state_dict(), hub / "checkpoints" / FAN.file_name(sfd_url))
    with FAN.FanBackend(device="cpu") as backend:
        rgb = np.random.default_rng(0).integers(0, 255, (128, 128, 3), np.uint8)
        faces = backend.landmarks(rgb, np.array([[20, 20, 108, 108, 0.9]], np.float32))
        boxes = backend.detect(rgb)
    assert len(faces) == 1 and faces[0].landmarks.shape == (68, 3) and np.isfinite(faces[0].landmarks).all()
    assert boxes.ndim == 2 and boxes.shape[1] == 5


# --- eval on a project prepared with --tracker fan -------------------------------------------

class ContentFan(FakeFaceAlignment):
    """Lips that follow the picture: the mean grey level of the box's lower half moves them."""

    def _detect(self, image):
        return [np.array([40, 40, 216, 230, 0.99], np.float32)]

    def get_landmarks_from_image(self, image, detected_faces=None):
        pts = face68(0)
        pts[48:68, 1] += image[150:230, 60:200].mean() / 10
        return [pts for _ in detected_faces]


@pytest.mark.slow
def test_eval_of_a_fan_project_measures_lmd_on_fans_lips(obama_project, hub, monkeypatch, tmp_path):
    import json
    import shutil

    from speech2lip.core.engine.checkpoint import build_model, save_checkpoint
    from speech2lip.core.config import preset
    from speech2lip.core.evaluation.evaluate import evaluate
    from speech2lip.core.project import Project

    fa = fake_library(monkeypatch)
    fa.FaceAlignment = ContentFan
    root = tmp_path / "project"
    shutil.copytree(obama_project, root)
    manifest = json.loads(Project(root).manifest_path.read_text())
    Project(root).manifest_path.write_text(json.dumps({**manifest, "tracker": "fan"}))
    project = Project(root)
    cfg = preset("quick")
    save_checkpoint(project, {"config": cfg, "step": 0, "elapsed_s": 0.0,
                              "model": build_model(cfg, project).state_dict(), "history": []})
    with pytest.raises(TrackerError, match="weights are missing"):      # refused before any rendering
        evaluate(root, output=tmp_path / "refused")
    assert not (tmp_path / "refused").exists()
    with_weights(hub)
    report = evaluate(root, output=tmp_path / "rep")
    assert report["lmd_points"] == "fan68" and "FAN" in report["regions"]["lmd"]
    rows = report["methods"]
    assert rows["real"]["lmd"] == 0.0 and rows["static"]["lmd"] > 0 and np.isfinite(rows["model"]["lmd"])


# --- prepare --tracker fan --------------------------------------------------------------------

def test_prepare_with_fan_refuses_missing_weights_before_making_anything(hub, monkeypatch, media, tmp_path):
    from speech2lip.core.prepare.job import prepare

    fake_library(monkeypatch)
    out = tmp_path / "out"
    out.mkdir()
    with pytest.raises(TrackerError, match="weights are missing"):
        prepare(media["obama_a"], out / "p", tracker="fan")
    assert list(out.iterdir()) == []


def test_prepare_with_fan_takes_the_lip_box_from_fans_points(hub, monkeypatch, media, tmp_path):
    """The canonical frame's FAN lips (the fake's known points) decide the mouth box, as in the paper."""
    from speech2lip.core.prepare.job import prepare
    from speech2lip.core.project import Project

    fake_library(monkeypatch)
    with_weights(hub)
    monkeypatch.setattr(FakeFaceAlignment, "faceless", set())
    monkeypatch.setattr(FakeFaceAlignment, "two", set())
    p = prepare(media["obama_a"], tmp_path / "p", tracker="fan")
    m = Project(p.root).manifest
    assert m.tracker == "fan"
    fan_boxes = []
    for i in range(256):
        pts = np.zeros((68, 3), np.float32)
        pts[:, :2] = face68(i)
        fan_boxes.append(G.mouth_box_68(pts, p.size))
    assert m.mouth_box in fan_boxes
    assert m.mouth_box != G.mouth_box(p.array("landmarks")[m.canonical_index], p.size)
