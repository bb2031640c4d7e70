"""`speech2lip eval`: the held-out evaluation (or the cross-identity sync test) as a report."""
from __future__ import annotations

from pathlib import Path

from ..errors import UserError
from ..project import can_write_under
from ..evaluation.report import COLUMNS


def register(subparsers) -> None:
    p = subparsers.add_parser(
        "eval", help="score the model on the held-out frames against baselines; writes report.json/.html",
        description="Drive the model with the held-out audio over the held-out frames' poses and compare "
                    "with the real frames (PSNR, SSIM, CPBD, LMD, audio-visual offset), next to the real, "
                    "static-mouth and nearest-audio-retrieval baselines.")
    p.add_argument("--project", required=True, help="a prepared and trained project folder")
    p.add_argument("--checkpoint", help="checkpoint file (default: the project's latest)")
    p.add_argument("--output", help="report folder (default: PROJECT/eval, or PROJECT/eval_cross with --audio)")
    p.add_argument("--audio", help="other speech to drive the model with (cross-identity: sync only)")
    p.set_defaults(func=cmd_eval)


def cmd_eval(args) -> int:
    from . import run_job
    from ..evaluation.evaluate import evaluate

    from ..project import ProjectFolder, report_html

    _check_output_dir(Path(args.output) if args.output else ProjectFolder(args.project).eval_dir(bool(args.audio)))
    report = run_job(evaluate, Path(args.project), checkpoint=args.checkpoint, output=args.output,
                     audio=args.audio, quiet=getattr(args, "quiet", False))
    print(format_table(report))
    out = Path(report["output"])
    print(f"report: {report_html(out)}")
    return 0


def _check_output_dir(out: Path) -> None:
    """Refuse an unusable report folder now, not after the evaluation's minutes of work."""
    if out.exists() and not out.is_dir():
        raise UserError(f"{out} is a file; --output takes a folder for report.json and report.html. "
                        f"Choose a new folder name.")
    parent, ok = can_write_under(out)
    if not ok:
        raise UserError(f"cannot write in {parent}; choose a report folder you can write to (--output).")


def format_table(report: dict) -> str:
    """The metrics table as plain text, one row per method."""
    from ..evaluation.report import below_chance

    rows = report["methods"]
    level = report.get("calibration", {}).get("chance_confidence")
    cols = [(k, label) for k, label, _ in COLUMNS if any(k in r for r in rows.values())]
    head = ["method"] + [label for _, label in cols]
    lines = [head]
    for name, r in rows.items():
        cells = [name]
        for k, _ in cols:
            v = r.get(k)
            if v is None or v != v:
                cells.append("-")
            elif k == "av_offset_frames":
                cells.append(f"{int(v):+d}" + ("?" if below_chance(r, level) else " "))
            elif k.startswith("psnr"):
                cells.append(f"{v:.2f}")
            else:
                cells.append(f"{v:.3f}")
        lines.append(cells)
    widths = [max(len(line[i]) for line in lines) for i in range(len(head))]
    text = ["  ".join(c.rjust(w) if i else c.ljust(w) for i, (c, w) in enumerate(zip(line, widths)))
            for line in lines]
    info = (f"{report.get('preset')} model, {report.get('train_steps')} steps, "
            f"{report.get('train_minutes')} min of training; {report['frames']['evaluated']} frames")
    cal = report.get("calibration", {})
    level = cal.get("chance_confidence")
    sync = (f"sync offsets relative to the speaker's own lead on the training frames "
            f"({cal.get('train_offset_frames', 0):+d}); "
            f"confidence reached by chance at this length: "
            + (f"{level:.2f}" if isinstance(level, float) and level == level else "unknown")
            + " (? marks offsets below it)")
    return "\n".join([info] + text + [sync])
