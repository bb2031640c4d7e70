"""In a log (stderr not a terminal) the CLI writes a plain progress line every few seconds, not a bar."""
from __future__ import annotations

import io

from speech2lip.core import cli
from speech2lip.core.jobs import Progress


def test_a_log_gets_a_line_per_stage_and_then_one_every_few_seconds():
    now = [0.0]
    out = io.StringIO()
    p = cli.LineProgress(every=5.0, stream=out, clock=lambda: now[0])
    for step in range(1, 601):                       # 600 steps over 60 s
        now[0] = step * 0.1
        p(Progress("train", step, 600, data={"loss": 0.5}))
    p(Progress("done", 1, 1, "saved"))
    lines = out.getvalue().splitlines()
    assert "\r" not in out.getvalue()
    assert lines[0] == "train: 1/600 (0%) loss 0.5"
    assert 12 <= len(lines) <= 15                    # one per 5 s, plus how each stage started and ended
    assert lines[-2:] == ["train: 600/600 (100%) loss 0.5", "done: 1/1 (100%) saved"]


def test_run_job_writes_lines_when_stderr_is_not_a_terminal(capsys):
    def job(progress, cancel):
        for i in range(3):
            progress(Progress("render", i + 1, 3, f"frame {i + 1}"))
        return "ok"

    assert cli.run_job(job) == "ok"
    err = capsys.readouterr().err
    assert err.splitlines() == ["render: 1/3 (33%) frame 1", "render: 3/3 (100%) frame 3"] and "\r" not in err
