"""Throughput and peak memory of the engine against the naive path, and of the filter through vspipe.

    .venv/bin/python bench/bench.py [--quick]     # prints the tables and writes docs/BENCHMARKS.md

- engine: `Engine.run` on one window (streamed: each output frame leaves as soon as it is made;
  cleaning and SPyNet in batches of the engine's `batch_frames`: 1 on the CPU).
- engine, batched: the same with cleaning and SPyNet over the whole window at once, which shows
  what batching across frames buys on this device.
- naive: the official script's way: the whole window through `model.forward`, every output kept.
Both run the full-size RealBasicVSRNet (random weights: speed and memory do not depend on them) on
the same random frames, each configuration in a fresh process so that peak memory is its own:
peak process RSS (CPU) or `torch.cuda.max_memory_allocated` (CUDA) minus the level before the
window. The engine's output frames are dropped as they come, as the filter hands them to
VapourSynth; the naive path keeps them all, as the official script does. Then
`core.rbvsr.Upscale` through vspipe against the engine alone on the same clip.
"""

import argparse
import datetime
import json
import os
import platform
import re
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]

CHILD = r"""
import json, resource, sys, time, numpy as np, torch
sys.path.insert(0, sys.argv[5])
from vsrealbasicvsr.engine import engine
from vsrealbasicvsr.models import RealBasicVSRNet
mode, frames, height, width = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4])
device = torch.device(sys.argv[6])
torch.manual_seed(0)
network = RealBasicVSRNet().eval()
data = np.random.default_rng(0).random((frames, 3, height, width), dtype=np.float32)
def rss():
    with open("/proc/self/status") as f:
        return next(int(l.split()[1]) for l in f if l.startswith("VmRSS")) * 1024
if mode.startswith("engine"):
    engine._load_network = lambda model, checkpoint, keyframe_stride=None: network
    eng = engine.Engine(
        width, height, 1, 32, checkpoint="-", max_seq_len=frames, overlap=0, tile=-1, device=str(device)
    )
    if mode == "engine-batched":
        eng.batch_frames = frames
    views = [tuple(memoryview(data[t, p]) for p in range(3)) + (width * 4,) for t in range(frames)]
    # the host takes each frame as it comes (the filter copies it into a VapourSynth frame)
    run = lambda: [None for _ in eng.run(views, 0, 0, 0)]
else:
    network = network.to(device)
    def run():
        with torch.no_grad():
            out = network(torch.from_numpy(data).unsqueeze(0).to(device))
            return [f.clamp(0, 1).cpu().numpy() for f in out[0]]
# warm-up on 2 frames: the libraries' one-time allocations are not the window's
if mode.startswith("engine"):
    list(eng.run(views[:2], 0, 0, 0))
else:
    with torch.no_grad():
        network(torch.from_numpy(data[:2]).unsqueeze(0).to(device))
if device.type == "cuda":
    torch.cuda.synchronize(); torch.cuda.reset_peak_memory_stats()
base = rss()
start = time.perf_counter()
outputs = run()
seconds = time.perf_counter() - start
peak = (torch.cuda.max_memory_allocated() if device.type == "cuda"
        else resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024 - base)
print(json.dumps({"fps": frames / seconds, "peak": peak}))
"""


HAND_WRITTEN = "## Reading these figures"  # the first heading bench.py does not write


def measure(mode, frames, height, width, device):
    env = dict(os.environ, MALLOC_MMAP_THRESHOLD_="1048576")  # freed buffers leave RSS at once
    out = subprocess.run(
        [sys.executable, "-c", CHILD, mode, str(frames), str(height), str(width), str(REPO), device],
        capture_output=True,
        text=True,
        check=True,
        env=env,
    )
    return json.loads(out.stdout.strip().splitlines()[-1])


VPY = """
import vapoursynth as vs
core = vs.core
clip = core.std.BlankClip(width={w}, height={h}, format=vs.RGBS, length={n}, color=[0.2, 0.5, 0.8])
clip = core.std.AddBorders(core.std.Crop(clip, left=8), left=8, color=[0.9, 0.1, 0.3])
core.rbvsr.Upscale(clip, checkpoint={ckpt!r}, max_seq_len={window}, overlap=0, tile=-1).set_output()
"""


def vspipe_vs_engine(frames, window, height, width, rounds):
    """fps of vspipe through the filter, of the engine alone and of the plain network's forward
    (the naive path) on the same frames and windows (several windows, so that the first one's
    start-up costs are shared alike), in alternating rounds, each in a fresh process:
    [(vspipe_fps, engine_fps, naive_fps), ...]."""
    import torch

    from vsrealbasicvsr.models import RealBasicVSRNet

    with tempfile.TemporaryDirectory() as folder:
        checkpoint = Path(folder) / "full.pth"
        torch.manual_seed(0)
        torch.save(RealBasicVSRNet().state_dict(), checkpoint)
        script = Path(folder) / "bench.vpy"
        script.write_text(VPY.format(w=width, h=height, n=frames, window=window, ckpt=str(checkpoint)))
        vspipe = Path(sys.executable).parent / "vspipe"
        # the script's source clip without the filter (whose engine would load a second network)
        source = (
            f"import sys, time; sys.path.insert(0, {str(REPO)!r}); "
            f"exec(''.join(line for line in open({str(script)!r}) if 'rbvsr' not in line));"
            "import numpy as np, torch, vsrealbasicvsr.engine.engine as E;"
            "frames = [clip.get_frame(i) for i in range(clip.num_frames)];"
            "planes = [[np.ascontiguousarray(np.asarray(f[p])) for p in range(3)] for f in frames];"
        )
        windows = f"range(0, {frames}, {window})"
        engine = (
            source + f"eng = engine.Engine({width}, {height}, 1, 32, checkpoint={str(checkpoint)!r}, "
            f"max_seq_len={window}, overlap=0, tile=-1);"
            f"views = [tuple(memoryview(p) for p in f) + ({width} * 4,) for f in planes];"
            f"t = time.perf_counter(); [a for s in {windows} for _, a, *_ in eng.run(views[s:s + {window}], s, 0, 0)];"
            f"print({frames} / (time.perf_counter() - t))"
        )
        naive = (
            source
            + "from vsrealbasicvsr.weights.checkpoints import load_model;"
            + f"net = load_model({str(checkpoint)!r});"
            "lqs = torch.from_numpy(np.array(planes)).unsqueeze(0); torch.set_grad_enabled(False);"
            f"t = time.perf_counter(); "
            f"[f.clamp(0, 1).numpy() for s in {windows} for f in net(lqs[:, s:s + {window}])[0]];"
            f"print({frames} / (time.perf_counter() - t))"
        )

        def fps(code: str) -> float:
            return float(
                subprocess.run([sys.executable, "-c", code], check=True, capture_output=True, text=True)
                .stdout.strip()
                .splitlines()[-1]
            )

        results = []
        for _ in range(rounds):
            # vspipe -p reports the frames per second of output, after the script (and the model) loaded
            report = subprocess.run(
                [str(vspipe), "-p", str(script), "--"], check=True, capture_output=True, text=True
            ).stderr
            vspipe_fps = float(re.search(r"Output \d+ frames in [\d.]+ seconds \(([\d.]+) fps\)", report)[1])
            results.append((vspipe_fps, fps(engine), fps(naive)))
        return results


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--quick", action="store_true", help="windows 4 and 8 only")
    args = parser.parse_args()
    windows = (4, 8) if args.quick else (4, 8, 16, 32)
    sizes = ((64, 64), (96, 128))
    command = (
        "python bench/bench.py"
        + (" --quick" if args.quick else "")
        + (f" --device {args.device}" if args.device != "cpu" else "")
    )
    lines = [
        "# Benchmarks",
        "",
        f"Made by `{command}` on {datetime.date.today()}, {platform.machine()}, {os.cpu_count()} cores, "
        f"device {args.device}; full-size RealBasicVSRNet, fp32, one window per process. Peak memory: "
        "process RSS rise during the window (CPU) or torch's peak allocation (CUDA); the engine's "
        "frames leave as they come (to VapourSynth, in the filter), the naive path keeps all its "
        "outputs. This machine is shared: compare within a table, not across runs.",
        "",
        "| frame | window | fps: engine | engine, batched | naive | peak MiB: engine | engine, batched "
        "| naive | peak ratio engine / naive |",
        "| --- | --- | --- | --- | --- | --- | --- | --- | --- |",
    ]
    for height, width in sizes:
        for frames in windows:
            engine = measure("engine", frames, height, width, args.device)
            batched = measure("engine-batched", frames, height, width, args.device)
            naive = measure("naive", frames, height, width, args.device)
            row = (
                f"| {width}x{height} | {frames} | {engine['fps']:.2f} | {batched['fps']:.2f} | {naive['fps']:.2f} | "
                f"{engine['peak'] / 2**20:.0f} | {batched['peak'] / 2**20:.0f} | {naive['peak'] / 2**20:.0f} | "
                f"{engine['peak'] / naive['peak']:.2f} |"
            )
            print(row, flush=True)
            lines.append(row)
    rounds = vspipe_vs_engine(48, 8, 64, 64, rounds=3)
    lines += [
        "",
        "## The filter through vspipe against the engine alone and the plain forward",
        "",
        "Same 48 frames of 64x64 RGBS, six windows of 8, three rounds alternating between the three, each "
        "in a fresh process; vspipe's figure is its own `-p` report (output frames per second once the "
        "script is loaded), the engine's is `Engine.run` on the frames, the plain forward's is the "
        "network's `forward` on each window (the naive path above).",
        "",
        "| round | vspipe fps | engine fps | plain forward fps | vspipe / engine | vspipe / plain forward |",
        "| --- | --- | --- | --- | --- | --- |",
    ]
    lines += [
        f"| {i} | {v:.2f} | {e:.2f} | {n:.2f} | {v / e:.2f} | {v / n:.2f} |" for i, (v, e, n) in enumerate(rounds, 1)
    ]
    lines += [
        "",
        f"Median ratios: vspipe / engine {statistics.median(v / e for v, e, _ in rounds):.2f}, "
        f"vspipe / plain forward {statistics.median(v / n for v, _, n in rounds):.2f}.",
        "",
        "## GPU",
        "",
        "Not measured: no GPU was lent to the task that made this file. "
        "`python bench/bench.py --device cuda` makes the same tables on one.",
    ]
    print("\n".join(lines[-15:]))
    write_measured_part(REPO / "docs" / "BENCHMARKS.md", "\n".join(lines))


def write_measured_part(path, measured):
    """Replace what the last run wrote (up to the first hand-written section) and keep the rest."""
    kept = ""
    if path.exists():
        text = path.read_text()
        if HAND_WRITTEN in text:
            kept = text[text.index(HAND_WRITTEN) :]
    path.write_text(measured + "\n" + ("\n" + kept if kept else ""))


if __name__ == "__main__":
    main()
