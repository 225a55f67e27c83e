"""Resident memory over a long decoded clip: does it grow with the clip? (docs/MEMORY.md)

    .venv/bin/python bench/memory_slope.py                              # vspipe and the command, torch
    .venv/bin/python bench/memory_slope.py --modes vspipe --backends torch,openvino --frames 3000

What runs, each case a fresh process:
- vspipe: `vspipe -p script.vpy /dev/null`, the script a user writes for a long clip: bestsource ->
  RGBS -> `core.rbvsr.Upscale` (`--script-cache`: with or without the README's advice for long
  clips, `core.max_cache_size` and bestsource's `cachesize`);
- upscale: `vsrealbasicvsr upscale clip.mp4 out.mkv --codec ffv1 --no-scene-detect`, the
  command (its graph sets both caches itself).

The clip: ffmpeg's testsrc2 at --size, --frames frames, H.264 (a real decoded source: every
frame is its own allocation, unlike `std.BlankClip`'s one shared frame). The weights: the tests'
tiny RealBasicVSR checkpoint (tests/data/realbasicvsr_tiny.pth; memory per frame does not depend
on the network's width), `--max-seq-len` 10 and `--overlap` 8, on the CPU.

Sampled every --period seconds: the resident memory (VmRSS) of the measured process and its
children, ffmpeg's excepted (the command's encoders), and the frames done (vspipe's `-p` line,
the command's progress line). Reported: the least-squares slope of RSS against frames over the samples after
--warmup frames, in KB per 1,000 frames, beside one input frame's size in RGBS; the same over
the last half of those frames, and the least RSS in each tenth of them (a step levels off, a
leak does not).
"""

from __future__ import annotations

import argparse
import math
import os
import re
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent
CHECKPOINT = REPO / "tests" / "data" / "realbasicvsr_tiny.pth"
FRAMES_DONE = re.compile(r"(?:Frame: |upscale: )(\d+(?:\.\d+)?)/\d+")

SCRIPT = """\
import vapoursynth as vs
core = vs.core
{cache}
clip = core.bs.VideoSource({clip!r}{source_cache})
clip = core.resize.Bicubic(clip, format=vs.RGBS, matrix_in_s="709")
clip = core.rbvsr.Upscale(clip, checkpoint={checkpoint!r}, max_seq_len={window}, overlap={overlap},
                          device="cpu", backend={backend!r})
clip.set_output()
"""


def make_clip(path: Path, size: str, frames: int) -> None:
    subprocess.run(
        [
            str(BIN / "ffmpeg"),
            "-v",
            "error",
            "-y",
            "-f",
            "lavfi",
            "-i",
            f"testsrc2=size={size}:rate=25",
            "-frames:v",
            str(frames),
            "-c:v",
            "libx264",
            "-pix_fmt",
            "yuv420p",
            str(path),
        ],
        check=True,
    )


def rss_kb(pid: int) -> int | None:
    """VmRSS of `pid` and its descendants but ffmpeg (the command's encoders), in KB: `vspipe` on
    PATH is a small launcher whose child is the real vspipe."""
    try:
        status = Path(f"/proc/{pid}/status").read_text()
        children = [
            int(child)
            for task in Path(f"/proc/{pid}/task").iterdir()
            for child in (task / "children").read_text().split()
        ]
    except OSError:
        return None
    if Path(f"/proc/{pid}/comm").read_text().strip() == "ffmpeg":
        return 0
    own = next((int(line.split()[1]) for line in status.splitlines() if line.startswith("VmRSS:")), 0)
    return own + sum(rss_kb(child) or 0 for child in children)


def measure(command: list[str], env: dict, period: float) -> list[tuple[float, int]]:
    """(frames done, RSS in KB) samples of `command`'s process while it runs."""
    process = subprocess.Popen(command, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    done = [0.0]
    tail: list[str] = []

    def read_progress():
        buffer = b""
        while chunk := process.stderr.read1(4096):
            buffer += chunk
            *lines, buffer = re.split(rb"[\r\n]", buffer)
            for line in lines:
                text = line.decode(errors="replace")
                if match := FRAMES_DONE.search(text):
                    done[0] = float(match.group(1))
                elif text.strip():
                    tail[:] = [*tail[-5:], text]

    reader = threading.Thread(target=read_progress, daemon=True)
    reader.start()
    samples = []
    while process.poll() is None:
        kb = rss_kb(process.pid)
        if kb is not None and done[0] > 0:
            samples.append((done[0], kb))
        time.sleep(period)
    reader.join()
    if process.returncode != 0:
        raise SystemExit(f"{command[0]} failed ({process.returncode}):\n" + "\n".join(tail))
    return samples


def slope(samples: list[tuple[float, int]], warmup: int) -> tuple[float, int, float, float]:
    """(KB per 1,000 frames, samples used, first and last RSS in MB) after `warmup` frames."""
    used = [(frames, kb) for frames, kb in samples if frames >= warmup]
    if len(used) < 3:
        raise SystemExit(f"only {len(used)} samples after {warmup} frames; use more --frames or a shorter --period")
    mean_x = sum(x for x, _ in used) / len(used)
    mean_y = sum(y for _, y in used) / len(used)
    sxx = sum((x - mean_x) ** 2 for x, _ in used)
    sxy = sum((x - mean_x) * (y - mean_y) for x, y in used)
    return 1000 * sxy / sxx, len(used), used[0][1] / 1024, used[-1][1] / 1024


def floors(samples: list[tuple[float, int]], warmup: int, parts: int = 10) -> list[float]:
    """The least RSS in MB in each of `parts` equal spans of frames after `warmup`: a step (an
    allocator's arena) shows as one rise and flat after, a leak as a rise in every span."""
    span = (samples[-1][0] - warmup) / parts
    spans = [[kb for frames, kb in samples if 0 <= (frames - warmup) / span - i < 1] for i in range(parts)]
    return [min(kbs) / 1024 for kbs in spans if kbs]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--modes", default="vspipe,upscale", help="vspipe, upscale (comma-separated)")
    parser.add_argument("--backends", default="torch", help="torch, openvino (comma-separated)")
    parser.add_argument(
        "--script-cache",
        default="advised",
        help="vspipe's script: 'advised' (README: core.max_cache_size and bestsource's cachesize), "
        "'default' (neither), or both comma-separated",
    )
    parser.add_argument("--frames", type=int, default=3000)
    parser.add_argument("--size", default="48x32")
    parser.add_argument("--max-seq-len", type=int, default=10)
    parser.add_argument("--overlap", type=int, default=8)
    parser.add_argument("--warmup", type=int, default=500, help="frames left out of the slope")
    parser.add_argument("--period", type=float, default=2.0, help="seconds between samples")
    args = parser.parse_args()

    width, height = (int(side) for side in args.size.split("x"))
    # README: 4 x (max_seq_len + 2 x overlap) decoded frames (8-bit 4:2:0 here), at least 1 MB
    read = args.max_seq_len + 2 * args.overlap
    advised_cache_mb = max(1, math.ceil(4 * read * width * height * 3 / 2 / 2**20))
    frame_kb = width * height * 3 * 4 / 1024
    load = os.getloadavg()
    print(f"clip: testsrc2 {args.size} H.264, {args.frames} frames; one RGBS input frame is {frame_kb:.1f} KB")
    print(f"load average before: {load[0]:.2f} {load[1]:.2f} {load[2]:.2f} on {os.cpu_count()} CPUs")
    with tempfile.TemporaryDirectory(prefix="rbvsr-memory-") as temporary:
        folder = Path(temporary)
        clip = folder / "clip.mp4"
        make_clip(clip, args.size, args.frames)
        home = folder / "home"  # the command's weights: the tiny checkpoint as the registry's file
        home.mkdir()
        from vsrealbasicvsr.weights import registry

        shutil.copy(CHECKPOINT, home / registry.MODELS["realbasicvsr"].filename)
        env = {**os.environ, "VSREALBASICVSR_HOME": str(home), "VSREALBASICVSR_PROGRESS_INTERVAL": "1"}
        for backend in args.backends.split(","):
            for mode in args.modes.split(","):
                for script_cache in args.script_cache.split(",") if mode == "vspipe" else [""]:
                    if mode == "vspipe":
                        script = folder / f"{backend}-{script_cache}.vpy"
                        advised = script_cache == "advised"
                        script.write_text(
                            SCRIPT.format(
                                cache="core.max_cache_size = 1024" if advised else "",
                                clip=str(clip),
                                source_cache=f", cachesize={advised_cache_mb}" if advised else "",
                                checkpoint=str(CHECKPOINT),
                                window=args.max_seq_len,
                                overlap=args.overlap,
                                backend=backend,
                            )
                        )
                        command = [str(BIN / "vspipe"), "-p", str(script), "/dev/null"]
                    else:
                        output = folder / f"out-{backend}.mkv"
                        command = [
                            str(BIN / "vsrealbasicvsr"),
                            "upscale",
                            str(clip),
                            str(output),
                            "--codec",
                            "ffv1",
                            "--no-scene-detect",
                            "--overwrite",
                            "--device",
                            "cpu",
                            "--backend",
                            backend,
                            "--max-seq-len",
                            str(args.max_seq_len),
                            "--overlap",
                            str(args.overlap),
                        ]
                    started = time.monotonic()
                    samples = measure(command, env, args.period)
                    per_1000, used, first_mb, last_mb = slope(samples, args.warmup)
                    name = f"{mode} {script_cache}".strip()
                    print(
                        f"{name:16s} {backend:8s} slope {per_1000:8.1f} KB per 1,000 frames "
                        f"({per_1000 / frame_kb:.2f} input frames), RSS {first_mb:.0f} -> {last_mb:.0f} MB "
                        f"over frames {args.warmup}-{int(samples[-1][0])} ({used} samples, "
                        f"{time.monotonic() - started:.0f} s)",
                        flush=True,
                    )
                    half = (args.warmup + int(samples[-1][0])) // 2
                    print(
                        f"{'':25s} last half (frames {half}-{int(samples[-1][0])}): "
                        f"slope {slope(samples, half)[0]:8.1f} KB per 1,000 frames; "
                        f"RSS floor per tenth: {' '.join(f'{mb:.0f}' for mb in floors(samples, args.warmup))} MB",
                        flush=True,
                    )
    print(f"load average after: {' '.join(f'{value:.2f}' for value in os.getloadavg())}")


if __name__ == "__main__":
    main()
