"""The eval job end to end on a real prepared clip: report files, finite values, known rows.

The model here is freshly initialised (saved as a checkpoint the way training
saves one), so these tests check the protocol, not the model's quality; the
real and baseline rows are what they must be whatever the model is.
"""
from __future__ import annotations

import json
import math
import shutil

import numpy as np
import pytest

from speech2lip.core.engine.checkpoint import build_model, save_checkpoint
from speech2lip.core.config import preset
from speech2lip.core.errors import UserError
from speech2lip.core.evaluation.evaluate import METHODS, evaluate
from speech2lip.core.media import read_audio, write_wav
from speech2lip.core.project import Project

KEYS = {"psnr_mouth", "ssim_mouth", "psnr_face", "ssim_face", "cpbd", "sharpness_inner", "laplacian_inner",
        "teeth_share", "opening_std", "lmd", "av_offset_frames", "av_confidence"}


@pytest.fixture(scope="module")
def model_project(obama_project, tmp_path_factory):
    root = tmp_path_factory.mktemp("eval") / "project"
    shutil.copytree(obama_project, root)
    project = Project(root)
    cfg = preset("quick")
    save_checkpoint(project, {"config": cfg, "step": 0, "elapsed_s": 0.0,
                              "model": build_model(cfg, project).state_dict(), "history": []})
    # A short loss history, as training writes it, so the report draws its loss plot.
    hist = [{"step": s, "stage": "lip", "t": s / 10, "loss": 1.0 / s, "mouth": 0.5 / s} for s in range(1, 60, 10)]
    hist.append({"step": 60, "heldout_psnr": 22.5})
    (project.checkpoints / "history.json").write_text(json.dumps({"history": hist}))
    return root


def _all_finite(obj) -> bool:
    if isinstance(obj, dict):
        return all(_all_finite(v) for v in obj.values())
    if isinstance(obj, float):
        return math.isfinite(obj)
    return obj is not None


@pytest.mark.slow
def test_eval_writes_a_finite_report_with_the_known_rows(model_project, tmp_path):
    seen = []
    report = evaluate(model_project, output=tmp_path / "rep", progress=seen.append)
    out = tmp_path / "rep"
    for name in ("report.json", "report.html", "strips.png", "opening.png", "sync.png", "losses.png"):
        assert (out / name).stat().st_size > 500, name
    on_disk = json.loads((out / "report.json").read_text())
    assert list(on_disk["methods"]) == list(METHODS)
    for name, row in on_disk["methods"].items():
        assert set(row) == KEYS, name
        assert _all_finite(row), (name, row)
    real = on_disk["methods"]["real"]
    assert real["psnr_mouth"] == 100.0 and real["psnr_face"] == 100.0 and real["ssim_face"] == 1.0
    assert real["lmd"] == 0.0 and on_disk["lmd_points"] == "facemesh40"
    assert abs(real["av_offset_frames"]) <= 1 and real["av_confidence"] > 0.1
    for name in ("static", "retrieval", "model"):
        row = on_disk["methods"][name]
        assert row["psnr_mouth"] < 60 and row["lmd"] > 0
        # Only the mouth region changes: the face crop stays close to the real one.
        assert row["psnr_face"] > row["psnr_mouth"]
    # A mouth that never moves shows less sync than the real lips.
    assert on_disk["methods"]["static"]["av_confidence"] < real["av_confidence"]
    assert on_disk["preset"] == "quick" and on_disk["train_steps"] == 0
    assert report["frames"]["evaluated"] == Project(model_project).n_frames - Project(model_project).n_train
    html = (out / "report.html").read_text()
    assert "<table>" in html and html.count("data:image/png;base64,") == 4
    assert {p.stage for p in seen} >= {"render", "track", "metrics", "done"}


@pytest.mark.slow
def test_eval_cross_identity_reports_sync_and_detail_but_nothing_that_needs_real_frames(model_project, speech,
                                                                                        tmp_path):
    wave = read_audio(speech["austen"])[: 16000 * 3]          # 3 s of another speaker
    clip = tmp_path / "other.wav"
    write_wav(clip, wave)
    report = evaluate(model_project, output=tmp_path / "cross", audio=clip)
    on_disk = json.loads((tmp_path / "cross" / "report.json").read_text())
    assert on_disk["kind"] == "cross_identity" and list(on_disk["methods"]) == ["static", "retrieval", "model"]
    for row in on_disk["methods"].values():
        assert set(row) == {"av_offset_frames", "av_confidence", "opening_std", "sharpness_inner",
                            "laplacian_inner", "cpbd"} and _all_finite(row)
        assert abs(row["av_offset_frames"]) <= 15
    assert report["frames"]["evaluated"] == 90
    assert (tmp_path / "cross" / "report.html").is_file()


def test_eval_refuses_an_untrained_project_with_a_useful_message(obama_project, tmp_path):
    root = tmp_path / "bare"
    shutil.copytree(obama_project, root, ignore=shutil.ignore_patterns("checkpoints", "eval*"))
    with pytest.raises(UserError, match="train"):
        evaluate(root)
    assert not (root / "eval").exists()


def test_report_json_has_no_nan_even_when_a_metric_is_missing(tmp_path):
    from speech2lip.core.evaluation.evaluate import EvalData
    from speech2lip.core.evaluation.report import write_report

    data = EvalData(fps=30.0, frame_index=np.arange(10), strip_at=np.array([0, 9]),
                    strips={"model": np.zeros((2, 32, 32, 3), np.uint8)},
                    openings={"model": np.linspace(0, 1, 10)}, envelope=np.linspace(-60, -20, 10),
                    sync_curves={"model": (np.arange(-3, 4), np.zeros(7))})
    write_report(tmp_path, {"kind": "held_out", "methods": {"model": {"lmd": float("nan"), "cpbd": 0.5}}}, data)
    text = (tmp_path / "report.json").read_text()
    assert "NaN" not in text and json.loads(text)["methods"]["model"]["lmd"] is None
