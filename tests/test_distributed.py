"""Issue 16, part 4: one model trained by several processes (DDP over gloo on this CPU), under torchrun.

Each test starts real processes: about half a minute each on a 2-core machine.
"""
from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
import torch

from engine_fixtures import tiny_config
from speech2lip.core.engine.checkpoint import load_checkpoint
from speech2lip.core.project import Project

TESTS = Path(__file__).resolve().parent
# A worker as a user's script under torchrun would be: it calls train() and reports what it ended with.
WORKER = textwrap.dedent("""
    import json, os, sys
    sys.path.insert(0, {tests!r})
    from engine_fixtures import tiny_config
    import speech2lip.core.engine.train as T

    root, steps, resume, die_at = sys.argv[1], int(sys.argv[2]), sys.argv[3] == "1", int(sys.argv[4])
    rank = int(os.environ["RANK"])
    if die_at and rank == 1:
        real = T._step_loss
        def dying(model, data, cfg, stage, recon, gen, shape, sync, expert, step, critic=None):
            if step == die_at:
                os._exit(3)                    # a crash: no cleanup, no exception
            return real(model, data, cfg, stage, recon, gen, shape, sync, expert, step, critic)
        T._step_loss = dying
    cfg = tiny_config(**{{"train.checkpoint_every": 10, "train.preview_every": 10_000,
                          "train.stage_split": [0.7, 0.3, 0.0]}})
    r = T.train(root, steps=steps, device="cpu", config=None if resume else cfg, resume=resume)
    with open(os.path.join(root, f"rank{{rank}}.json"), "w") as f:
        json.dump(r, f)
""")


def torchrun(tmp: Path, root: Path, steps: int, resume: bool = False, die_at: int = 0, n: int = 2,
             timeout: float = 240) -> subprocess.CompletedProcess:
    script = tmp / "worker.py"
    script.write_text(WORKER.format(tests=str(TESTS)))
    env = {**os.environ, "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc-per-node={n}",
           "--max-restarts=0", str(script), str(root), str(steps), "1" if resume else "0", str(die_at)]
    return subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=timeout)


def ranks_results(root: Path) -> list[dict]:
    return [json.loads((root / f"rank{r}.json").read_text()) for r in (0, 1)]


@pytest.mark.slow
def test_two_processes_train_one_model_that_resumes_on_one_and_back(project_copy, tmp_path):
    from speech2lip.core.engine.train import train

    root = project_copy
    p = torchrun(tmp_path, root, steps=40)
    assert p.returncode == 0, p.stderr[-3000:]
    r0, r1 = ranks_results(root)
    # One model: both ranks hold the same weights (the loop also checks this and would have failed).
    assert r0["weights_digest"] == r1["weights_digest"]
    assert r0["processes"] == 2 and r0["batch"] == tiny_config().train.batch   # the global batch is the budget's
    project = Project(root)
    ckpt = load_checkpoint(project.checkpoints / "latest.pt", project)
    assert ckpt["step"] == 40
    assert not any(k.startswith("module.") for k in ckpt["model"])
    mouth = [h["mouth_mse"] for h in ckpt["history"] if "mouth_mse" in h]
    assert len(mouth) == 4 and min(mouth[1:]) < mouth[0], mouth          # it learns

    # The multi-process checkpoint continues in one process ...
    r = train(root, steps=50, device="cpu", resume=True)
    assert r["steps"] == 50 and r["processes"] == 1
    # ... and that one in two processes again.
    for f in ("rank0.json", "rank1.json"):
        (root / f).unlink()
    p = torchrun(tmp_path, root, steps=60, resume=True)
    assert p.returncode == 0, p.stderr[-3000:]
    r0, r1 = ranks_results(root)
    assert r0["steps"] == r1["steps"] == 60 and r0["weights_digest"] == r1["weights_digest"]
    assert load_checkpoint(project.checkpoints / "latest.pt", project)["step"] == 60


@pytest.mark.slow
def test_a_dying_worker_stops_the_run_and_the_last_checkpoint_resumes(project_copy, tmp_path):
    from speech2lip.core.engine.train import train

    root = project_copy
    p = torchrun(tmp_path, root, steps=40, die_at=25)
    assert p.returncode != 0                                  # torchrun took rank 0 down with it
    assert not (root / "rank0.json").exists()
    project = Project(root)
    ckpt = load_checkpoint(project.checkpoints / "latest.pt", project)
    assert ckpt["step"] == 20                                 # rank 0's last save before the crash
    assert train(root, steps=30, device="cpu", resume=True)["steps"] == 30


def test_gpus_flag_launches_torchrun(monkeypatch, tmp_path):
    """`speech2lip train --gpus 2` runs the same command in two processes under torchrun."""
    from speech2lip.core.engine import distributed as D

    seen = {}

    def fake_run(cmd, **kw):
        seen["cmd"] = cmd
        return subprocess.CompletedProcess(cmd, 0)

    monkeypatch.setattr(D.subprocess, "run", fake_run)
    assert D.launch(2, ["train", "--project", str(tmp_path), "--steps", "5"]) == 0
    cmd = seen["cmd"]
    assert cmd[1:3] == ["-m", "torch.distributed.run"] and "--nproc-per-node=2" in cmd
    assert cmd[-6:] == ["speech2lip.core.cli", "train", "--project", str(tmp_path), "--steps", "5"]
    assert "--gpus" not in cmd


def test_dub_takes_several_speech_files_or_a_folder_in_one_process(monkeypatch, tmp_path, capsys):
    """Batch dubbing: each speech file becomes NAME.mp4 in the output folder, one dub call each,
    all with one model loaded once."""
    import speech2lip.core.dub.render as R
    from speech2lip.core.cli import main

    calls, loads, used = [], [], set()

    class FakeRenderer:
        def __init__(self, *a, **k):
            loads.append(a)

    def fake_dub(project, speech, output, progress=None, cancel=None, renderer=None, **kw):
        calls.append((Path(speech).name, Path(output)))
        used.add(id(renderer))
        Path(output).write_bytes(b"mp4")
        return Path(output)

    monkeypatch.setattr(R, "dub", fake_dub)
    monkeypatch.setattr(R, "Renderer", FakeRenderer)
    folder = tmp_path / "speech"
    folder.mkdir()
    for name in ("b.wav", "a.flac", "notes.txt"):
        (folder / name).write_bytes(b"x")
    out = tmp_path / "out"
    assert main(["dub", "--project", str(tmp_path), str(folder), "-o", str(out), "--quiet"]) == 0
    assert calls == [("a.flac", out / "a.mp4"), ("b.wav", out / "b.mp4")]   # audio only, in name order
    assert len(loads) == 1 and len(used) == 1 and id(None) not in used   # the model is loaded once

    calls.clear()
    assert main(["dub", "--project", str(tmp_path), str(folder / "b.wav"), str(folder / "a.flac"),
                 "-o", str(out / "two"), "--quiet"]) == 0
    assert [c[0] for c in calls] == ["b.wav", "a.flac"] and (out / "two" / "b.mp4").is_file()
    # Several files into one .mp4 is refused before any work.
    calls.clear()
    assert main(["dub", "--project", str(tmp_path), str(folder), "-o", str(tmp_path / "x.mp4"), "--quiet"]) != 0
    assert not calls and "folder" in capsys.readouterr().err
