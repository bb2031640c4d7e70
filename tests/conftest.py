"""Shared fixtures: the real media beside the repository, and prepared projects made once per run."""
from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest

os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")

REPO = Path(__file__).resolve().parents[1]
MEDIA = REPO.parent / "shared" / "media"
CLIPS = {"obama_a": MEDIA / "obama_address_a.mp4", "obama_c": MEDIA / "obama_address_c.mp4",
         "reagan": MEDIA / "reagan_address.mp4"}
SPEECH = {"jfk": MEDIA / "speech" / "jfk_inaugural.flac",
          "austen": MEDIA / "speech" / "librivox_austen_0870.wav",
          "austen2": MEDIA / "speech" / "librivox_austen_0920.wav"}


@pytest.fixture(autouse=True, scope="session")
def _isolated_user_data(tmp_path_factory):
    """Never touch the real user data folder or settings from tests."""
    d = tmp_path_factory.mktemp("userdata")
    os.environ["SPEECH2LIP_DATA_DIR"] = str(d)
    os.environ.setdefault("XDG_CONFIG_HOME", str(d / "config"))
    yield d


@pytest.fixture(autouse=True)
def _collect_cycles_between_tests():
    """Once a JobQueue exists, the cycle collector runs only from the app's GUI timer
    (app/worker.py); tests that never spin the event loop get a collection after each test."""
    yield
    import gc

    if not gc.isenabled():
        gc.collect()


def _need(path: Path) -> Path:
    if not path.exists():
        pytest.fail(f"real media missing: {path} (tests read ../shared/media beside the repository)")
    return path


@pytest.fixture(scope="session")
def media():
    return {k: _need(v) for k, v in CLIPS.items()}


@pytest.fixture(scope="session")
def speech():
    return {k: _need(v) for k, v in SPEECH.items()}


def side_by_side(dst: Path, left: Path, right: Path, audio_from: int, seconds: float = 12.0) -> Path:
    """Two real clips side by side at the same height (256 px), with the speech of one of them
    (0: the left clip's, 1: the right clip's), cut to `seconds`."""
    import subprocess

    from speech2lip.core.media import ffmpeg_exe

    dst.parent.mkdir(parents=True, exist_ok=True)
    subprocess.run([ffmpeg_exe(), "-y", "-loglevel", "error", "-i", str(_need(left)), "-i", str(_need(right)),
                    "-t", f"{seconds}", "-filter_complex",
                    "[0:v]scale=-2:256,setsar=1[a];[1:v]scale=-2:256,setsar=1[b];[a][b]hstack=inputs=2[v]",
                    "-map", "[v]", "-map", f"{audio_from}:a", "-c:v", "libx264", "-preset", "veryfast",
                    "-c:a", "aac", str(dst)], check=True)
    return dst


_PREPARED: dict[str, Path] = {}


def prepared_project(name: str, tmp_path_factory) -> Path:
    """Prepare a real clip once per test session; tests that modify it must copy it."""
    if name not in _PREPARED:
        from speech2lip.core.prepare.job import prepare

        root = tmp_path_factory.mktemp(f"prepared_{name}") / name
        prepare(_need(CLIPS[name]), root)
        _PREPARED[name] = root
    return _PREPARED[name]


@pytest.fixture(scope="session")
def obama_project(tmp_path_factory) -> Path:
    return prepared_project("obama_a", tmp_path_factory)


@pytest.fixture(scope="session")
def reagan_project(tmp_path_factory) -> Path:
    return prepared_project("reagan", tmp_path_factory)


@pytest.fixture
def project_copy(obama_project, tmp_path) -> Path:
    """A private copy of the prepared obama project, safe to modify."""
    dst = tmp_path / "project"
    shutil.copytree(obama_project, dst)
    return dst


# Fixtures that train a model until it has learned something (minutes of CPU): the tests that
# use them are `slow`, so `pytest -m "not slow"` is the quick run and CI still runs everything.
LEARNING_FIXTURES = {"trained", "expert_run"}


def pytest_collection_modifyitems(config, items):
    for item in items:
        if LEARNING_FIXTURES & set(getattr(item, "fixturenames", ())):
            item.add_marker(pytest.mark.slow)


_STATUS: dict[str, int] = {}


def pytest_sessionfinish(session, exitstatus):
    _STATUS["exit"] = int(exitstatus)


@pytest.hookimpl(trylast=True)
def pytest_unconfigure(config):
    # PySide6 with pyqtgraph can abort while the interpreter tears down ("bool_dealloc", a refcount
    # bug in a C extension) after every test has passed and the summary is printed. The result is
    # known by now, so leave without the teardown rather than let it turn a green run red.
    import sys

    if "exit" in _STATUS and "PySide6" in sys.modules:
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(_STATUS["exit"])
