"""`speech2lip train`, `dub` and `demo`: the engine's subcommands, plus the demo job itself."""
from __future__ import annotations

import argparse
import math
import time
from pathlib import Path
from typing import Any, Optional

from ..errors import UserError
from ..jobs import CancelToken, Progress, ProgressFn, ensure_token, no_progress

DEMO_PROJECT = "demo-project"


def _resource(name: str) -> Path:
    from importlib.resources import files

    path = Path(str(files("speech2lip.resources") / name))
    if not path.is_file():
        raise UserError(f"the bundled {name} is missing from the installation; reinstall Speech2Lip Studio.")
    return path


def demo_minutes(device: str = "auto") -> float:
    """Training time of the demo: well inside 15 minutes in all on a 2-core CPU."""
    from ..device import pick_device

    return 2.0 if pick_device(device).type == "cuda" else 8.0


def demo(output: Optional[Path | str] = None, minutes: Optional[float] = None, device: str = "auto",
         retrain: bool = False, progress: ProgressFn = no_progress,
         cancel: Optional[CancelToken] = None) -> tuple[Path, dict[str, Any]]:
    """Prepare the bundled clip, train `quick`, dub the bundled speech; returns (MP4, figures).

    The project lives in the user data dir and is reused: a second demo skips
    what is already done unless `retrain`.
    """
    from ..prepare.job import prepare
    from ..project import Project, looks_like_project, user_data_dir
    from ..dub.render import dub
    from ..engine.train import train

    cancel = ensure_token(cancel)
    clip, speech = _resource("demo_clip.mp4"), _resource("demo_speech.wav")
    root = user_data_dir() / DEMO_PROJECT
    output = Path(output) if output else user_data_dir() / "demo_dubbed.mp4"
    ok = False
    if looks_like_project(root):
        try:
            ok = Project(root).manifest.source.get("name") == clip.name
        except UserError:
            ok = False
    if not ok:
        prepare(clip, root, force=True, progress=progress, cancel=cancel)
    project = Project(root)
    figures: dict[str, Any] = {}
    if retrain or not project.is_trained:
        figures = train(root, "quick", minutes=minutes or demo_minutes(device), device=device,
                        progress=progress, cancel=cancel, new_run=True)
    path = dub(root, speech, output, device=device, progress=progress, cancel=cancel)
    return path, figures


# --- command handlers -----------------------------------------------------------------------

def _print_figures(r: dict[str, Any]) -> None:
    print(f"  steps        {r['steps']} in {r['seconds']:.0f} s on {r['device']} (preset {r['preset']})")
    print(f"  held-out mouth PSNR {r['heldout_mouth_psnr']:.2f} dB (baselines: static mouth "
          f"{r['static_mouth_psnr']:.2f} dB, mean training mouth {r['mean_mouth_psnr']:.2f} dB, "
          f"untrained {r['initial_heldout_mouth_psnr']:.2f} dB)")
    print(f"  held-out mouth motion correlation {r['heldout_motion_corr']:.2f} "
          f"(untrained {r['initial_heldout_motion_corr']:.2f}; 0 = static, 1 = as filmed)")
    print(f"  checkpoint   {r['checkpoint']} (step {r['steps']}); to train further: "
          f"speech2lip train --project {Path(r['checkpoint']).parent.parent} --resume --steps {2 * r['steps']}")


def cmd_train(args) -> int:
    import os

    from . import run_job
    from ..engine.train import train

    if args.gpus is not None and "WORLD_SIZE" not in os.environ:
        return _launch_train(args)
    main = int(os.environ.get("RANK", 0)) == 0          # under torchrun, rank 0 speaks for the run
    if main and args.steps is None and args.minutes is None and args.preset in (None, "quick") \
            and not args.resume:
        print("no --steps or --minutes given: training the preset's default number of steps")
    r = run_job(train, Path(args.project), preset=args.preset, steps=args.steps, minutes=args.minutes,
                device=args.device, resume=args.resume, new_run=args.new_run, sync_expert=args.sync_expert,
                quiet=args.quiet or not main)
    if not main:
        return 0
    print(f"trained {args.project}")
    if r.get("previous_run"):
        print(f"  previous run kept in {r['previous_run']}")
    _print_figures(r)
    return 0


def _launch_train(args) -> int:
    """`train --gpus N`: the same command, without --gpus, in N processes under torchrun."""
    from ..engine.distributed import launch

    argv = ["train", "--project", str(args.project), "--device", args.device]
    for flag, value in (("--preset", args.preset), ("--steps", args.steps), ("--minutes", args.minutes),
                        ("--sync-expert", args.sync_expert)):
        if value is not None:
            argv += [flag, str(value)]
    argv += [f for f, on in (("--resume", args.resume), ("--new-run", args.new_run), ("--quiet", args.quiet)) if on]
    return launch(args.gpus, argv)


def _pose_track(args):
    for name in ("yaw", "pitch", "roll"):
        if not math.isfinite(getattr(args, name)):
            raise UserError(f"--{name} must be a number of degrees (got {getattr(args, name)}).")
    if args.pose_track and any(v for v in (args.yaw, args.pitch, args.roll)):
        raise UserError("use either --pose-track or --yaw/--pitch/--roll, not both.")
    from ..dub.pose import PoseTrack

    if args.pose_track:
        return PoseTrack.load(args.pose_track)
    if any(v for v in (args.yaw, args.pitch, args.roll)):
        return PoseTrack.constant(args.yaw or 0.0, args.pitch or 0.0, args.roll or 0.0)
    return None


def cmd_dub(args) -> int:
    from . import run_job
    from ..dub.render import Renderer, dub

    t = time.perf_counter()
    notes: list[str] = []

    if args.batch < 1:
        raise UserError(f"--batch must be 1 or more (got {args.batch}).")
    jobs, failed = _dub_jobs(args.audio, Path(args.output)), []
    pose = _pose_track(args)
    # One process and one loaded model for all the speech files: torch, the engine and the GPU start once.
    renderer = Renderer(Path(args.project), args.checkpoint, args.device) if len(jobs) > 1 else None
    for speech, output in jobs:
        try:
            out = run_job(_dub_logging(dub, notes), Path(args.project), speech, output,
                          checkpoint=args.checkpoint, start_frame=args.start_frame, pose_track=pose,
                          batch=args.batch, device=args.device, audio_bitrate=args.audio_bitrate,
                          encoder=args.encoder, renderer=renderer, quiet=args.quiet)
        except UserError as e:
            if len(jobs) == 1:
                raise
            failed.append(speech)
            print(f"failed: {speech}: {e}")
            continue
        for n in notes:
            print(f"note: {n}")
        notes.clear()
        print(f"wrote {out} in {time.perf_counter() - t:.1f} s")
    if failed:
        print(f"{len(failed)} of {len(jobs)} speech files failed")
    return 1 if failed else 0


AUDIO_SUFFIXES = {".wav", ".flac", ".mp3", ".m4a", ".aac", ".ogg", ".opus", ".mp4", ".mov", ".mkv", ".webm"}


def _dub_jobs(audio: list[str], output: Path) -> list[tuple[Path, Path]]:
    """(speech, MP4) pairs: one file to --output, or several files and folders into the --output folder."""
    if len(audio) == 1 and not Path(audio[0]).is_dir():
        return [(Path(audio[0]), output)]
    speech: list[Path] = []
    for a in map(Path, audio):
        speech += sorted(f for f in a.iterdir() if f.suffix.lower() in AUDIO_SUFFIXES) if a.is_dir() else [a]
    if not speech:
        raise UserError(f"no audio files in {', '.join(audio)}.")
    if output.suffix.lower() == ".mp4":
        raise UserError("several speech files are dubbed into a folder: give --output a folder, not an .mp4.")
    stems = [s.stem for s in speech]
    if len(set(stems)) < len(stems):
        raise UserError(f"two speech files share a name ({sorted({x for x in stems if stems.count(x) > 1})[0]}); "
                        f"each becomes NAME.mp4 in {output}.")
    output.mkdir(parents=True, exist_ok=True)
    return [(s, output / f"{s.stem}.mp4") for s in speech]


def _dub_logging(job, notes: list[str]):
    """Keep the job's one-off notes (pose clamping) to print after the bar."""
    def wrapped(*a, progress: ProgressFn = no_progress, **kw):
        def p(pr: Progress) -> None:
            if pr.done == 0 and pr.message and "clamp" in pr.message.lower():
                notes.append(pr.message)
            progress(pr)
        return job(*a, progress=p, **kw)
    return wrapped


def cmd_demo(args) -> int:
    from . import run_job

    t = time.perf_counter()
    path, figures = run_job(demo, args.output, minutes=args.minutes, device=args.device, retrain=args.retrain,
                            quiet=args.quiet)
    if figures:
        _print_figures(figures)
    print(f"demo finished in {time.perf_counter() - t:.0f} s")
    print(path)
    return 0


DEVICE_HELP = "where to compute: auto (default) picks a CUDA GPU, then Apple MPS, then the CPU"
# Copies of core.dub.pose.LIMITS and core.engine.train.CHECKPOINT_SECONDS (a test keeps them equal): importing
# those modules loads torch, a second on every start, even for --help.
POSE_LIMITS = (20.0, 15.0, 15.0)
CHECKPOINT_SECONDS = 300.0


def register(sub: argparse._SubParsersAction) -> None:
    from ..config import preset

    quick, standard = preset("quick").train, preset("standard").train
    p = sub.add_parser(
        "train", help="learn the speaker's lips from a prepared project",
        epilog=f"Checkpoints go to PROJECT/checkpoints/latest.pt every {quick.checkpoint_every} steps (quick; "
               f"{standard.checkpoint_every} with standard) or {CHECKPOINT_SECONDS / 60:g} minutes, whichever "
               f"comes first, and when stopped by Ctrl-C, SIGTERM or a closed terminal.")
    p.add_argument("--project", required=True, help="a folder made by `speech2lip prepare`")
    p.add_argument("--preset", choices=("quick", "standard"),
                   help="quick (the default): minutes on a CPU; standard: full quality on a CUDA GPU; "
                        "--resume keeps the interrupted run's settings")
    budget = p.add_mutually_exclusive_group()
    budget.add_argument("--minutes", type=float, help="train for this many minutes in all (counted from the start "
                                                      "of the run, also on --resume)")
    budget.add_argument("--steps", type=int,
                        help=f"train up to this step in all (default: {quick.steps} with quick, {standard.steps} "
                             f"with standard; counted from the start of the run, also on --resume)")
    p.add_argument("--device", choices=("auto", "cpu", "cuda", "mps"), default="auto", help=DEVICE_HELP)
    run = p.add_mutually_exclusive_group()
    run.add_argument("--resume", action="store_true", help="continue from the last checkpoint at its exact step")
    run.add_argument("--new-run", action="store_true",
                     help="start again on a trained project; the previous run is kept in checkpoints/run-N/")
    p.add_argument("--sync-expert", metavar="FILE", help="a pretrained sync expert to use instead of training one")
    p.add_argument("--gpus", type=int, metavar="N",
                   help="train one model on N GPUs (N processes under torchrun; the CPU with --device cpu); "
                        "a step is then one update over the same batch, split between them")
    p.set_defaults(func=cmd_train)

    p = sub.add_parser("dub", help="re-render the clip so the lips follow new speech")
    p.add_argument("--project", required=True, help="a trained project folder")
    p.add_argument("audio", nargs="+", help="any audio (or video) file ffmpeg reads; several files or a folder "
                                            "are dubbed one after another with the model loaded once")
    p.add_argument("--output", "-o", required=True,
                   help="the MP4 to write; with several speech files, the folder for their NAME.mp4")
    p.add_argument("--checkpoint", help="a checkpoint file (default: the project's latest)")
    p.add_argument("--start-frame", type=int, default=0,
                   help="first background frame of the clip, 0 to its frame count - 1 (default 0)")
    yaw, pitch, roll = POSE_LIMITS
    p.add_argument("--yaw", type=float, default=0.0,
                   help=f"turn the head by this many degrees, -{yaw:g} to {yaw:g} (right > 0; default 0)")
    p.add_argument("--pitch", type=float, default=0.0,
                   help=f"nod the head by this many degrees, -{pitch:g} to {pitch:g} (down > 0; default 0)")
    p.add_argument("--roll", type=float, default=0.0,
                   help=f"tilt the head by this many degrees, -{roll:g} to {roll:g} (clockwise > 0; default 0)")
    p.add_argument("--pose-track", metavar="FILE.json", help="pose keyframes instead of a constant offset")
    p.add_argument("--batch", type=int, default=8,
                   help="frames rendered at once (default 8); lower it if the GPU runs out of memory")
    p.add_argument("--encoder", choices=("auto", "x264", "nvenc"), default="auto",
                   help="H.264 encoder: auto uses the GPU's (NVENC) when rendering on an NVIDIA GPU that "
                        "ffmpeg can use, else x264 (default auto)")
    p.add_argument("--audio-bitrate", type=int, default=192, metavar="KBPS",
                   help="AAC bitrate of the sound in kb/s, 32 to 512 (default 192); the sound keeps the "
                        "speech file's sample rate and channels")
    p.add_argument("--device", choices=("auto", "cpu", "cuda", "mps"), default="auto", help=DEVICE_HELP)
    p.set_defaults(func=cmd_dub)

    p = sub.add_parser("demo", help="prepare, train and dub the bundled clip; prints the MP4's path")
    p.add_argument("--output", "-o", help="where to write the MP4 (default: in the user data folder)")
    p.add_argument("--minutes", type=float, help="training time (default: 8 on a CPU, 2 on a GPU)")
    p.add_argument("--retrain", action="store_true",
                   help="train again even if the demo was trained before (the previous run is kept in "
                        "checkpoints/run-N/)")
    p.add_argument("--device", choices=("auto", "cpu", "cuda", "mps"), default="auto", help=DEVICE_HELP)
    p.set_defaults(func=cmd_demo)
