"""bench/gpu_check.py, the GPU checks in one command: its dry run on the CPU, and its exit status."""

import subprocess
import sys

import pytest
import torch
from conftest import REPO

SCRIPT = REPO / "bench" / "gpu_check.py"


def test_the_dry_run_runs_the_cpu_parts_and_names_every_skipped_check():
    done = subprocess.run(
        [sys.executable, str(SCRIPT), "--dry-run"], check=False, capture_output=True, text=True, timeout=600
    )
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    rows = [line.split(" | ") for line in done.stdout.splitlines() if line.startswith("| ") and "---" not in line]
    statuses = {row[0].lstrip("| "): row[-1].rstrip(" |") for row in rows[1:]}
    # what runs on the CPU ran and passed; what needs CUDA says so
    assert statuses["real weights fp32 on the CPU"] == "pass"
    assert statuses["batched vs one frame at a time, fp32"] == "pass"
    assert statuses["6 GiB budget: the plan for 640x360 (no run)"] == "pass"
    assert statuses["IconVSR speed fp32"] == statuses["BasicVSR++ speed fp32"] == "pass"
    for check in (
        "fp16 vs fp32 PSNR, real weights",
        "CUDA vs CPU output, fp32",
        "compile=True vs eager",
        "6 GiB budget: a run capped at it",
        "IconVSR fp16 speed and PSNR against fp32",
        "BasicVSR++ fp16 speed and PSNR against fp32",
    ):
        assert statuses[check] == "skipped: needs CUDA"
    assert statuses["offload=True"].startswith("skipped: needs CUDA")
    assert statuses["OOM recovery, real allocator"].startswith("skipped: needs CUDA")
    assert "fail" not in statuses.values()


@pytest.mark.skipif(torch.cuda.is_available(), reason="with a GPU this would run every check (minutes)")
def test_without_cuda_and_without_dry_run_it_says_so_and_fails():
    done = subprocess.run([sys.executable, str(SCRIPT)], check=False, capture_output=True, text=True, timeout=300)
    assert done.returncode == 2
    assert "no CUDA GPU" in done.stderr and "--dry-run" in done.stderr


def test_a_failed_check_makes_the_exit_status_non_zero(monkeypatch):
    monkeypatch.syspath_prepend(str(SCRIPT.parent))
    import gpu_check

    passed, failed, skipped = (gpu_check.Row("a", "x", "", status) for status in ("pass", "fail", "skipped: why"))
    assert gpu_check.exit_status([passed, skipped]) == 0
    assert gpu_check.exit_status([passed, failed, skipped]) == 1
