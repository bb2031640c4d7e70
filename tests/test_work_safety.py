"""Never lose the user's work: trained runs, interrupted runs, temporary folders, input files, sound.

Issue 13. Training tests use the tiny config and a handful of steps; signal tests run the
real command line in a subprocess.
"""
from __future__ import annotations

import os
import re
import shutil
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
import torch

from engine_fixtures import tiny_config
from speech2lip.core.engine import train as T
from speech2lip.core.engine.checkpoint import load_checkpoint
from speech2lip.core.cli import main
from speech2lip.core.errors import CheckpointError, ProjectError, UserError
from speech2lip.core.project import Project

TESTS = Path(__file__).resolve().parent
# The real command line, with the quick preset cut down to the tiny test config.
TINY_CLI = (
    "import sys; sys.path.insert(0, %r)\n"
    "from engine_fixtures import tiny_config\n"
    "import speech2lip.core.engine.train as T\n"
    "T.make_preset = lambda name='quick': tiny_config()\n"
    "from speech2lip.core.cli import main\n"
    "sys.exit(main(sys.argv[1:]))\n"
) % str(TESTS)


def step_of(root: Path) -> int:
    project = Project(root)
    return int(load_checkpoint(project.checkpoints / "latest.pt", project)["step"])


@pytest.fixture(scope="module")
def trained3(obama_project, tmp_path_factory) -> Path:
    """The obama project trained 3 tiny steps; copy before changing it."""
    root = tmp_path_factory.mktemp("safety") / "obama"
    shutil.copytree(obama_project, root)
    T.train(root, steps=3, device="cpu", config=tiny_config())
    return root


@pytest.fixture
def trained_copy(trained3, tmp_path) -> Path:
    dst = tmp_path / "trained"
    shutil.copytree(trained3, dst)
    return dst


def cli(capsys, *argv) -> tuple[int, str]:
    code = main(["--quiet", *map(str, argv)])
    return code, capsys.readouterr().err.strip()


# --- 1: a trained model is never replaced unasked -------------------------------------------------

def test_training_a_trained_project_is_refused_and_new_run_keeps_the_old_one(trained_copy, capsys, monkeypatch):
    before = (trained_copy / "checkpoints" / "latest.pt").read_bytes()
    code, err = cli(capsys, "train", "--project", trained_copy, "--steps", "2", "--device", "cpu")
    assert code == 2 and len(err.splitlines()) == 1
    assert "--resume" in err and "--new-run" in err
    assert (trained_copy / "checkpoints" / "latest.pt").read_bytes() == before

    T.train(trained_copy, steps=2, device="cpu", config=tiny_config(), new_run=True)
    assert step_of(trained_copy) == 2
    kept = trained_copy / "checkpoints" / "run-1"
    assert (kept / "latest.pt").read_bytes() == before and (kept / "history.json").is_file()
    monkeypatch.setattr(T, "make_preset", lambda name="quick": tiny_config())
    code = main(["--quiet", "train", "--project", str(trained_copy), "--steps", "1", "--device", "cpu", "--new-run"])
    assert code == 0
    assert f"previous run kept in {trained_copy / 'checkpoints' / 'run-2'}" in capsys.readouterr().out
    assert (trained_copy / "checkpoints" / "run-2" / "latest.pt").is_file() and step_of(trained_copy) == 1


# --- 2: signals and wall-time checkpoints ---------------------------------------------------------

def _start_cli_training(root: Path) -> tuple[subprocess.Popen, list[str]]:
    proc = subprocess.Popen([sys.executable, "-c", TINY_CLI, "train", "--project", str(root), "--steps", "100000",
                             "--device", "cpu"], stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    err: list[str] = []

    def read() -> None:
        for chunk in iter(lambda: proc.stderr.read1(4096), b""):
            err.append(chunk.decode(errors="replace"))

    threading.Thread(target=read, daemon=True).start()
    return proc, err


def _wait_for_step(proc: subprocess.Popen, err: list[str], n: int, timeout: float = 240) -> None:
    deadline = time.time() + timeout
    while time.time() < deadline and proc.poll() is None:
        steps = [int(s) for s in re.findall(r"(\d+)/100000", "".join(err))]
        if steps and max(steps) >= n:
            return
        time.sleep(0.2)
    proc.kill()
    pytest.fail(f"training did not reach step {n}: {''.join(err)[-500:]}")


@pytest.mark.slow
@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGHUP])
def test_a_stop_signal_saves_the_step_and_resume_continues(project_copy, capsys, sig):
    proc, err = _start_cli_training(project_copy)
    try:
        _wait_for_step(proc, err, 3)
        proc.send_signal(sig)
        code = proc.wait(timeout=120)
    finally:
        if proc.poll() is None:
            proc.kill()
    time.sleep(0.2)                      # the reader thread drains the pipe
    text = "".join(err)
    assert code == 128 + sig, text[-500:]
    saved = step_of(project_copy)
    assert saved >= 3
    assert f"step {saved} was saved" in text and "--resume" in text
    if sig == signal.SIGTERM:
        code, out = cli(capsys, "train", "--project", project_copy, "--resume", "--steps", saved + 2,
                        "--device", "cpu")
        assert code == 0, out
        assert step_of(project_copy) == saved + 2


def test_a_checkpoint_is_saved_every_few_minutes_whatever_the_step(project_copy, monkeypatch):
    monkeypatch.setattr(T, "CHECKPOINT_SECONDS", 0.0)

    def crash_at_3(p):
        if p.stage == "train" and p.done == 3:
            raise RuntimeError("power cut")

    with pytest.raises(RuntimeError):
        T.train(project_copy, steps=100, device="cpu", config=tiny_config(), progress=crash_at_3)
    assert step_of(project_copy) == 2            # checkpoint_every is 10000 in the tiny config


def test_cancel_message_names_the_saved_step_and_resume(trained_copy, capsys, monkeypatch):
    from speech2lip.core.jobs import CancelToken

    token = CancelToken()
    monkeypatch.setattr("speech2lip.core.cli.CancelToken", lambda: token)

    def cancel_at_4(p):
        if p.stage == "train" and p.done == 4:
            token.cancel()

    real_train = T.train
    monkeypatch.setattr(T, "train", lambda *a, progress=None, **k: real_train(
        *a, progress=lambda p: (progress(p), cancel_at_4(p)), **k))
    code, err = cli(capsys, "train", "--project", trained_copy, "--resume", "--steps", "50", "--device", "cpu")
    assert code == 130
    assert "step 4 was saved" in err and f"speech2lip train --project {trained_copy} --resume" in err
    assert step_of(trained_copy) == 4


# --- 3: resume edge cases ------------------------------------------------------------------------

def test_resume_without_a_checkpoint_says_so(project_copy, capsys):
    code, err = cli(capsys, "train", "--project", project_copy, "--resume", "--steps", "2", "--device", "cpu")
    assert code == 2 and "no checkpoint to resume" in err and "without --resume" in err
    assert not (project_copy / "checkpoints" / "latest.pt").exists()


def test_resume_with_a_budget_already_spent_says_so(trained_copy, capsys):
    before = (trained_copy / "checkpoints" / "latest.pt").read_bytes()
    code, err = cli(capsys, "train", "--project", trained_copy, "--resume", "--steps", "2", "--device", "cpu")
    assert code == 2 and len(err.splitlines()) == 1
    assert "already at step 3" in err and "--steps" in err
    assert (trained_copy / "checkpoints" / "latest.pt").read_bytes() == before


# --- 4: inputs checked before the first step --------------------------------------------------------

def test_a_bad_sync_expert_is_refused_before_the_first_step(project_copy, tmp_path):
    bad = tmp_path / "expert.pt"
    bad.write_bytes(os.urandom(2048))
    reports = []
    with pytest.raises(CheckpointError):
        T.train(project_copy, steps=3, device="cpu", config=tiny_config(), sync_expert=bad,
                progress=reports.append)
    assert not [p for p in reports if p.stage == "train"]
    with pytest.raises(UserError, match="no sync expert at"):
        T.train(project_copy, steps=3, device="cpu", config=tiny_config(), sync_expert=tmp_path / "none.pt")


def test_nan_budgets_and_poses_are_refused(obama_project, tmp_path, capsys):
    code, err = cli(capsys, "train", "--project", obama_project, "--minutes", "nan")
    assert code == 2 and "positive" in err
    code, err = cli(capsys, "dub", "--project", obama_project, tmp_path / "a.wav", "-o", tmp_path / "o.mp4",
                    "--yaw", "nan")
    assert code == 2 and "--yaw" in err and len(err.splitlines()) == 1


# --- 5: stale temporary folders ---------------------------------------------------------------------

def _old(path: Path) -> Path:
    t = time.time() - 2 * 3600
    os.utime(path, (t, t))
    return path


def test_stale_prepare_folders_are_removed_live_ones_kept(media, tmp_path):
    from speech2lip.core.jobs import CancelToken, Cancelled
    from speech2lip.core.prepare.job import prepare
    from speech2lip.core.tempfiles import WorkDir

    stale = tmp_path / ".clip.preparing-abc123"
    stale.mkdir()
    (stale / "frames.npy").write_bytes(b"x" * 1000)
    _old(stale)
    live = WorkDir(tmp_path, ".clip.preparing-")          # a prepare still running beside this one
    _old(live.path)
    other = tmp_path / ".other.preparing-abc"              # another project's: not this job's
    other.mkdir()
    _old(other)
    token = CancelToken()
    token.cancel()
    with pytest.raises(Cancelled):
        prepare(media["obama_a"], tmp_path / "clip", cancel=token)
    assert not stale.exists() and live.path.exists() and other.exists()
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted([live.path.name, other.name])
    live.cleanup()


def test_stale_dub_folders_are_removed_live_ones_kept(tmp_path):
    import numpy as np

    from speech2lip.core.media import VideoWriter
    from speech2lip.core.tempfiles import WorkDir

    stale = tmp_path / ".s2l-k3j2h1"
    stale.mkdir()
    (stale / "video.mp4").write_bytes(b"x" * 1000)
    _old(stale)
    foreign = tmp_path / ".s2l-export-x"                   # not what a dub writes: left alone
    foreign.mkdir()
    (foreign / "mix.wav").write_bytes(b"x")
    _old(foreign)
    live = WorkDir(tmp_path, ".s2l-")
    _old(live.path)
    with VideoWriter(tmp_path / "out.mp4", (64, 64), 25) as vw:
        vw.write(np.zeros((64, 64, 3), np.uint8))
    assert not stale.exists() and live.path.exists() and foreign.exists()
    live.cleanup()
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(["out.mp4", foreign.name])


# --- 6: advice for a damaged project keeps the model --------------------------------------------------

def test_corrupt_manifest_advice_keeps_checkpoints(trained_copy):
    (trained_copy / "project.json").write_text("{ not json", encoding="utf-8")
    with pytest.raises(ProjectError) as e:
        Project(trained_copy)
    msg = str(e.value)
    assert f"move {trained_copy / 'checkpoints'} out of the project first" in msg and "--force" in msg


# --- 11: the delivered sound is the user's own --------------------------------------------------------

def test_dub_keeps_the_speech_files_rate_channels_and_a_good_bitrate(trained3, tmp_path):
    from conftest import MEDIA
    from speech2lip.core.media import ffmpeg_exe, probe
    from speech2lip.core.dub.render import dub

    speech = tmp_path / "mandarin.wav"                      # 48 kHz stereo
    subprocess.run([ffmpeg_exe(), "-y", "-loglevel", "error", "-i", str(MEDIA / "speech" / "mandarin_news.wav"),
                    "-t", "1.5", "-c:a", "pcm_s16le", str(speech)], check=True)
    out = dub(trained3, speech, tmp_path / "out.mp4", device="cpu")
    info = probe(out)
    assert (info.audio_rate, info.audio_channels) == (48000, 2)
    dump = subprocess.run([ffmpeg_exe(), "-hide_banner", "-i", str(out)], capture_output=True, text=True).stderr
    kbps = int(re.search(r"Audio: aac.*?(\d+) kb/s", dump).group(1))
    assert kbps >= 150
    assert abs(info.duration - 1.5) < 0.1                  # the sound is not cut


def test_audio_bitrate_option(trained3, tmp_path, capsys):
    code, err = cli(capsys, "dub", "--project", trained3, tmp_path / "a.wav", "-o", tmp_path / "o.mp4",
                    "--audio-bitrate", "5")
    assert code == 2 and "--audio-bitrate" in err


# --- 12, 13: outputs checked first; inputs never overwritten ----------------------------------------

def test_dub_and_eval_to_a_read_only_folder_are_refused(trained3, speech, capsys):
    # /proc is read-only even for root, unlike a chmod-ed folder.
    code, err = cli(capsys, "dub", "--project", trained3, speech["austen"], "-o", "/proc/s2l-test.mp4")
    assert code == 2 and "cannot write" in err and len(err.splitlines()) == 1
    code, err = cli(capsys, "eval", "--project", trained3, "--output", "/proc/s2l-test-eval")
    assert code == 2 and "cannot write" in err


def test_eval_output_onto_an_existing_file_is_refused_first(trained3, tmp_path, capsys):
    target = tmp_path / "report.txt"
    target.write_text("mine")
    t = time.perf_counter()
    code, err = cli(capsys, "eval", "--project", trained3, "--output", target)
    assert code == 2 and "is a file" in err and time.perf_counter() - t < 5
    assert target.read_text() == "mine"


def test_dub_onto_its_own_input_is_refused(trained3, speech, tmp_path, capsys):
    own = tmp_path / "speech.wav"
    shutil.copy(speech["austen"], own)
    before = own.read_bytes()
    code, err = cli(capsys, "dub", "--project", trained3, own, "-o", own)
    assert code == 2 and "speech file" in err
    assert own.read_bytes() == before


# --- 14: wording ----------------------------------------------------------------------------------

def test_random_bytes_are_not_called_pickled_code(obama_project, tmp_path):
    project = Project(obama_project)
    junk = tmp_path / "junk.pt"
    junk.write_bytes(bytes(range(256)) * 16)
    with pytest.raises(CheckpointError) as e:
        load_checkpoint(junk, project)
    assert "pickled code" not in str(e.value) and "not a checkpoint" in str(e.value)

    class Evil:
        def __reduce__(self):
            return (os.system, ("true",))

    evil = tmp_path / "evil.pt"
    torch.save({"x": Evil()}, evil)
    with pytest.raises(CheckpointError, match="pickled code"):
        load_checkpoint(evil, project)


# --- 15: the command line ---------------------------------------------------------------------------

def test_quiet_works_after_the_subcommand_and_version_exists(capsys):
    from speech2lip.core.cli import build_parser

    p = build_parser()
    assert p.parse_args(["train", "--project", "x", "--quiet"]).quiet
    assert p.parse_args(["--quiet", "train", "--project", "x"]).quiet
    assert not p.parse_args(["train", "--project", "x"]).quiet
    with pytest.raises(SystemExit) as e:
        p.parse_args(["--version"])
    assert e.value.code == 0 and re.search(r"speech2lip \d+\.\d+", capsys.readouterr().out)


def test_help_texts_give_defaults_and_ranges():
    from speech2lip.core.cli import engine_commands as cli_engine
    from speech2lip.core.dub import pose
    from speech2lip.core.cli import build_parser
    from speech2lip.core.config import preset

    assert cli_engine.POSE_LIMITS == pose.LIMITS and cli_engine.CHECKPOINT_SECONDS == T.CHECKPOINT_SECONDS
    sub = build_parser()._subparsers._group_actions[0].choices
    train_help = " ".join(sub["train"].format_help().split())
    assert f"default: {preset('quick').train.steps}" in train_help
    assert f"every {preset('quick').train.checkpoint_every} steps" in train_help and "5 minutes" in train_help
    dub_help = " ".join(sub["dub"].format_help().split())
    for text in ("-20 to 20", "-15 to 15", "0 to its frame count - 1", "where to compute", "frames rendered at once",
                 "default 192"):
        assert text in dub_help
    for name in ("train", "dub", "demo"):
        device = next(a for a in sub[name]._actions if "--device" in a.option_strings)
        assert device.help


def test_quiet_drops_tensorflow_lite_log_lines():
    pytest.importorskip("mediapipe")              # the optional backend is the one that logs
    code = (
        "import sys, numpy as np\n"
        "from speech2lip.core.cli import native_logs_filtered\n"
        "from speech2lip.core.prepare.faces import FaceTracker\n"
        "with native_logs_filtered():\n"
        "    t = FaceTracker(tracker='mediapipe')\n"
        "    t.process(np.zeros((128, 128, 3), np.uint8))\n"
        "    print('speech2lip: error: kept', file=sys.stderr)\n"
    )
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    assert "speech2lip: error: kept" in proc.stderr
    assert "TensorFlow Lite" not in proc.stderr and "absl" not in proc.stderr and "W0000" not in proc.stderr


# --- resume puts the RNG states back on the CPU whatever device the checkpoint was mapped to ------------

class Mapped(torch.Tensor):
    """An RNG state as map_location=cuda leaves it: usable only after .cpu()."""

    calls = 0

    def cpu(self, *a, **k):
        Mapped.calls += 1
        return self.as_subclass(torch.Tensor)


def test_resume_restores_rng_states_on_the_cpu(trained_copy, monkeypatch):
    real_load, real_set = T.load_checkpoint, torch.set_rng_state

    def load_mapped(*a, **k):
        ck = real_load(*a, **k)
        ck["rng"] = {k_: v.as_subclass(Mapped) for k_, v in ck["rng"].items()}
        return ck

    def set_rng_state(state):
        if isinstance(state, Mapped):
            raise TypeError("RNG state must be a torch.ByteTensor on the CPU")
        real_set(state)

    monkeypatch.setattr(T, "load_checkpoint", load_mapped)
    monkeypatch.setattr(torch, "set_rng_state", set_rng_state)
    Mapped.calls = 0
    r = T.train(trained_copy, steps=4, device="cpu", resume=True)
    assert r["steps"] == 4 and Mapped.calls >= 2        # the sampler's and torch's states
