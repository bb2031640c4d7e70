"""The evaluation report: report.json plus a self-contained report.html with static plots.

The page opens offline: its PNGs are embedded as base64 and also written beside
it (the GUI shows those files). Plots use matplotlib's Agg backend, no display.
"""
from __future__ import annotations

import base64
import html
import io
import math
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from ..project import atomic_path, report_html, report_json, write_json

if TYPE_CHECKING:
    from .evaluate import EvalData

COLUMNS = [("psnr_mouth", "PSNR mouth (dB)", "higher"), ("ssim_mouth", "SSIM mouth", "higher"),
           ("psnr_face", "PSNR face (dB)", "higher"), ("ssim_face", "SSIM face", "higher"),
           ("cpbd", "CPBD inner", "higher"), ("sharpness_inner", "Sharpness inner", "higher"),
           ("teeth_share", "Teeth", "real"), ("opening_std", "Opening std", "real"), ("lmd", "LMD", "lower"),
           ("av_offset_frames", "AV offset (frames)", "zero"), ("av_confidence", "AV confidence", "higher")]
COLOURS = {"real": "#222222", "static": "#8c8c8c", "retrieval": "#1f77b4", "model": "#d62728"}


def write_report(out_dir: Path | str, report: dict[str, Any], data: "EvalData") -> dict[str, Path]:
    """Write report.json, the PNG figures and report.html into out_dir; returns their paths."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    figures = {
        "strips.png": strips_figure(data),
        "opening.png": opening_figure(data),
        "sync.png": sync_figure(data),
    }
    if data.history:
        loss = loss_figure(data.history)
        if loss is not None:
            figures["losses.png"] = loss
    paths: dict[str, Path] = {}
    for name, png in figures.items():
        with atomic_path(out / name) as tmp:
            tmp.write_bytes(png)
        paths[name] = out / name
    report = dict(report)
    report["figures"] = sorted(figures)
    write_json(report_json(out), _finite(report))
    with atomic_path(report_html(out)) as tmp:
        tmp.write_text(render_html(report, figures), encoding="utf-8")
    for path in (report_json(out), report_html(out)):
        paths[path.name] = path
    return paths


def _finite(obj: Any) -> Any:
    """JSON has no NaN: a metric that could not be measured is written as null."""
    if isinstance(obj, dict):
        return {k: _finite(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_finite(v) for v in obj]
    if isinstance(obj, (float, np.floating)):
        return float(obj) if math.isfinite(obj) else None
    if isinstance(obj, np.integer):
        return int(obj)
    return obj


# --- figures ------------------------------------------------------------------------

def _plt():
    import matplotlib

    matplotlib.use("Agg", force=True)
    import matplotlib.pyplot as plt

    return plt


def _png(fig) -> bytes:
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=100)
    _plt().close(fig)
    return buf.getvalue()


def strips_figure(data: "EvalData") -> bytes:
    """One row per method, one column per timestamp: the same moments side by side."""
    plt = _plt()
    names = list(data.strips)
    k = len(data.strip_at)
    fig, axes = plt.subplots(len(names), k, figsize=(1.6 * k + 0.8, 1.7 * len(names)), squeeze=False)
    for r, name in enumerate(names):
        for c in range(k):
            ax = axes[r][c]
            ax.imshow(data.strips[name][c])
            ax.set_xticks([])
            ax.set_yticks([])
            if r == 0:
                t = data.frame_index[data.strip_at[c]] / data.fps
                ax.set_title(f"{t:.2f} s", fontsize=9)
            if c == 0:
                ax.set_ylabel(name, fontsize=10)
    fig.tight_layout()
    return _png(fig)


def opening_figure(data: "EvalData") -> bytes:
    """Lip opening of every method over time, with the speech energy behind it."""
    plt = _plt()
    t = data.frame_index / data.fps if data.frame_index.size else np.zeros(0)
    n = len(t)
    fig, ax = plt.subplots(figsize=(10, 3.4))
    if data.envelope is not None and len(data.envelope):
        env = np.asarray(data.envelope, np.float64)[:n]
        ax2 = ax.twinx()
        ax2.fill_between(t[: len(env)], env.min(), env, color="#f2c14e", alpha=0.35, lw=0)
        ax2.set_ylabel("speech energy (dB)", color="#a07a10")
        ax2.tick_params(axis="y", colors="#a07a10")
        ax.set_zorder(ax2.get_zorder() + 1)
        ax.patch.set_visible(False)
    for name, op in data.openings.items():
        ax.plot(t, np.asarray(op)[:n], color=COLOURS.get(name), lw=2.0 if name in ("real", "model") else 1.2,
                label=name)
    ax.set_xlabel("time (s)")
    ax.set_ylabel("lip opening / inter-ocular")
    ax.legend(loc="upper left", fontsize=8, ncol=len(data.openings))
    fig.tight_layout()
    return _png(fig)


def sync_figure(data: "EvalData") -> bytes:
    """Correlation of the speech read from the lips with the speech heard, against lag, per method."""
    plt = _plt()
    fig, ax = plt.subplots(figsize=(6, 3.2))
    for name, (lags, curve) in data.sync_curves.items():
        ax.plot(lags, curve, color=COLOURS.get(name), marker=".", label=name)
    ax.axhline(0, color="#cccccc", lw=0.8)
    ax.axvline(0, color="#cccccc", lw=0.8)
    ax.set_xlabel("offset (frames, relative to the speaker's own lead; positive: lips early)")
    ax.set_ylabel("correlation")
    ax.legend(fontsize=8)
    fig.tight_layout()
    return _png(fig)


def loss_figure(history: list[dict[str, Any]]) -> bytes | None:
    """Training losses (log scale) and held-out mouth PSNR against step."""
    plt = _plt()
    losses: dict[str, list[tuple[float, float]]] = {}
    psnr: list[tuple[float, float]] = []
    baselines: dict[str, float] = {}
    for h in history:
        if not isinstance(h, dict) or "step" not in h:
            continue
        for k, v in h.items():
            if k in ("step", "t", "stage") or not isinstance(v, (int, float)) or not math.isfinite(v):
                continue
            if k == "heldout_psnr":
                psnr.append((h["step"], v))
            elif k.endswith("_psnr"):
                baselines[k] = v
            elif v > 0:
                losses.setdefault(k, []).append((h["step"], v))
    if not losses and not psnr:
        return None
    fig, axes = plt.subplots(1, 2, figsize=(11, 3.4))
    for k, pts in sorted(losses.items()):
        s, v = zip(*pts)
        axes[0].plot(s, v, lw=2.0 if k == "loss" else 1.0, label=k)
    axes[0].set_yscale("log")
    axes[0].set_xlabel("step")
    axes[0].set_title("training losses", fontsize=10)
    if losses:
        axes[0].legend(fontsize=7, ncol=2)
    if psnr:
        s, v = zip(*psnr)
        axes[1].plot(s, v, marker="o", color=COLOURS["model"], label="model")
    for k, v in baselines.items():
        axes[1].axhline(v, ls="--", color=COLOURS["static"], label=k.replace("_psnr", " mouth"))
    if psnr or baselines:
        axes[1].legend(fontsize=8)
    axes[1].set_xlabel("step")
    axes[1].set_ylabel("dB")
    axes[1].set_title("held-out mouth PSNR during training", fontsize=10)
    fig.tight_layout()
    return _png(fig)


# --- page ---------------------------------------------------------------------------

def _fmt(key: str, v: Any) -> str:
    if v is None or (isinstance(v, float) and not math.isfinite(v)):
        return "–"
    if key == "av_offset_frames":
        return f"{int(v):+d}"
    if key.startswith("psnr"):
        return f"{v:.2f}"
    return f"{v:.3f}"


def _best(rows: dict[str, dict[str, Any]], key: str, sense: str) -> set[str]:
    """Methods with the best value of a column, real frames excluded (they are the reference)."""
    vals = {m: r[key] for m, r in rows.items() if m != "real" and isinstance(r.get(key), (int, float))
            and math.isfinite(r[key])}
    if not vals:
        return set()
    ref = rows.get("real", {}).get(key)
    if sense == "real" and not isinstance(ref, (int, float)):
        return set()
    score = {"higher": lambda x: -x, "lower": lambda x: x, "zero": abs,
             "real": lambda x: abs(x - ref)}[sense]        # "real": nearest the real frames' value
    best = min(score(v) for v in vals.values())
    return {m for m, v in vals.items() if score(v) == best}


def below_chance(row: dict[str, Any], level: Any) -> bool:
    """True when a method's sync confidence does not beat what unrelated lips and speech reach."""
    conf = row.get("av_confidence")
    return (isinstance(level, float) and math.isfinite(level) and isinstance(conf, (int, float))
            and conf < level)


def render_html(report: dict[str, Any], figures: dict[str, bytes]) -> str:
    rows = report.get("methods", {})
    cols = [c for c in COLUMNS if any(c[0] in r for r in rows.values())]
    best = {key: _best(rows, key, sense) for key, _, sense in cols}
    head = "".join(f"<th>{html.escape(label)}</th>" for _, label, _ in cols)
    fr = report.get("frames", {})
    cal = report.get("calibration", {})
    level = cal.get("chance_confidence")
    body = []
    for name, r in rows.items():
        weak = below_chance(r, level)
        cells = "".join(
            f"<td class='{'best' if name in best[key] else ''}{' weak' if weak and key.startswith('av_') else ''}'>"
            f"{_fmt(key, r.get(key))}</td>" for key, _, _ in cols)
        body.append(f"<tr><th>{html.escape(name)}</th>{cells}</tr>")
    cross = report.get("kind") == "cross_identity"
    facts = [
        ("project", report.get("project")),
        ("checkpoint", report.get("checkpoint")),
        ("preset", report.get("preset")),
        ("training", f"{report.get('train_steps')} steps, {report.get('train_minutes')} min"),
        ("driving audio", report.get("audio") if cross else "the clip's own held-out speech"),
        ("frames", f"{fr.get('evaluated')} from frame {fr.get('first')} at {fr.get('fps')} fps "
                   f"({fr.get('n_train')} of {fr.get('n_frames')} used for training)"),
        ("sync calibration", f"the speaker's lips lead the sound by {cal.get('train_offset_frames'):+d} frames on "
                             f"the real training frames (confidence {cal.get('confidence', 0):.2f}); "
                             f"offsets below are relative to that"
         if isinstance(cal.get("train_offset_frames"), int) else "–"),
    ]
    regions = report.get("regions", {})
    chance = (f"unrelated lips and speech of this length reach {level:.2f} in 1 case of 10 on this clip, "
              f"so only values clearly above that show sync; grey offsets are below it and may be chance." if isinstance(level, float) and math.isfinite(level)
              else "the clip is too short to estimate its chance level.")
    imgs = {name: base64.b64encode(png).decode("ascii") for name, png in figures.items()}

    def img(name: str, alt: str) -> str:
        return f"<img alt='{alt}' src='data:image/png;base64,{imgs[name]}'>" if name in imgs else ""

    title = "Cross-identity sync" if cross else "Held-out evaluation"
    return f"""<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8"><title>Speech2Lip Studio – {title}</title>
<style>
body {{ font-family: system-ui, sans-serif; margin: 2em auto; max-width: 1100px; color: #222; }}
table {{ border-collapse: collapse; margin: 1em 0; }}
th, td {{ border: 1px solid #ddd; padding: 4px 10px; text-align: right; }}
thead th {{ background: #f4f4f4; }} tbody th {{ text-align: left; }}
td.best {{ font-weight: bold; background: #eaf6ea; }} td.weak {{ color: #aaa; font-style: italic; }}
dl {{ display: grid; grid-template-columns: max-content auto; gap: 2px 1em; }} dt {{ color: #666; }}
img {{ max-width: 100%; display: block; margin: 0.5em 0 1.5em; }} .note {{ color: #666; font-size: 0.9em; }}
</style></head><body>
<h1>{title}</h1>
<dl>{''.join(f'<dt>{html.escape(k)}</dt><dd>{html.escape(str(v))}</dd>' for k, v in facts)}</dl>
<h2>Metrics</h2>
<table><thead><tr><th>method</th>{head}</tr></thead><tbody>{''.join(body)}</tbody></table>
<p class="note">Bold: best method other than the real frames. Mouth region: {html.escape(str(regions.get('mouth', '')))}.
CPBD on the {html.escape(str(regions.get('cpbd', '')))}. Sharpness: {html.escape(str(regions.get('sharpness', '')))}.
Teeth: {html.escape(str(regions.get('teeth', '')))}. Opening std: {html.escape(str(regions.get('opening', '')))}; for
these two, nearest the real frames is best. LMD: {html.escape(str(regions.get('lmd', '')))}.
AV offset: {html.escape(str(regions.get('sync', '')))}; 0 is in sync. AV confidence: how strongly the speech read
from the lips follows the speech heard, in units of the speaker's own; {html.escape(chance)}</p>
<h2>Frames at the same moments</h2>{img('strips.png', 'frame strips')}
<h2>Lip opening and speech</h2>{img('opening.png', 'lip opening curves')}
<h2>Sync correlation by lag</h2>{img('sync.png', 'sync curves')}
{'<h2>Training</h2>' + img('losses.png', 'training losses') if 'losses.png' in imgs else ''}
</body></html>
"""
