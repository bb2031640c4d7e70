"""The project folder's file names are spelled in core/project.py only; everything else asks it."""
from __future__ import annotations

import re
from pathlib import Path

import pytest

from speech2lip.core import project as P

REPO = Path(__file__).resolve().parents[1]
NAMES = [P.MANIFEST, P.CHECKPOINTS, P.LATEST, P.HISTORY, P.RUN_CONFIG, P.SYNC_EXPERT, P.EVAL, P.EVAL_CROSS,
         P.REPORT_JSON, P.REPORT_HTML, P.ORIGINALS, P.SPEECH, P.STUDIO, P.EXPORTS, P.FACES_PICTURE]
# A name as a string literal of its own, or a path segment of one ("checkpoints/latest.pt"); prose in
# docstrings and help text may mention them. run-N folders: an f-string "run-{...}".
LITERAL = re.compile(r"""(["'])(?:[\w./-]*/)?(%s)(?:/[\w./-]*)?\1|["']run-\{""" % "|".join(map(re.escape, NAMES)))
# Same spelling, another thing: torch's own hub folder, the video writer's scratch file, the subcommand.
NOT_THE_PROJECT = {("core/engine/losses.py", "torch.hub"), ("core/prepare/tracking/fan.py", "torch.hub"),
                   ("core/media.py", "self._dir.path"),
                   ("core/cli/eval_commands.py", 'help="score')}


def offenders() -> list[str]:
    found = []
    for folder in ("core", "app"):
        for path in sorted((REPO / folder).rglob("*.py")):
            rel = path.relative_to(REPO).as_posix()
            if rel == "core/project.py":
                continue
            for i, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
                if LITERAL.search(line) and not any(rel == f and bit in line for f, bit in NOT_THE_PROJECT):
                    found.append(f"{rel}:{i}: {line.strip()}")
    return found


def test_no_project_file_name_outside_core_project():
    assert offenders() == []


def test_the_check_catches_a_spelled_name():
    assert LITERAL.search('p = root / "checkpoints" / "latest.pt"')
    assert LITERAL.search("Path(root) / 'eval/report.html'")
    assert LITERAL.search('dest = ckpt / f"run-{n}"')
    assert not LITERAL.search('"""Move the run into checkpoints/run-N/ (latest.pt and its history)."""')


def test_project_answers_for_its_folder(tmp_path):
    f = P.ProjectFolder(tmp_path)
    assert not f.is_trained and f.history() is None and f.run_config() is None
    f.checkpoints.mkdir()
    f.latest_path.write_bytes(b"x")
    P.write_json(f.history_path, {"history": [{"step": 1}]})
    assert f.is_trained and f.history() == [{"step": 1}]
    assert f.report_path == P.report_html(f.eval_dir()) and f.eval_dir(cross=True) != f.eval_dir()
    f.run_dir(1).mkdir()
    assert f.next_run_dir() == f.run_dir(2)

