"""OpenMP's wait policy: PASSIVE in the processes the engine runs in, unless the user chose one
(vsrealbasicvsr/engine/threads.py says why it must be set before torch is imported)."""

import os
import subprocess
import sys

POLICY = "OMP_WAIT_POLICY"


def python(code: str, **env: str) -> str:
    environment = {k: v for k, v in os.environ.items() if k != POLICY} | env
    return subprocess.run(
        [sys.executable, "-c", code], env=environment, capture_output=True, text=True, check=True
    ).stdout.strip()


def test_nothing_is_changed_once_torch_is_loaded():
    # OpenMP read the variable when torch loaded it: setting it then would only mislead
    code = "import os, torch, vsrealbasicvsr.engine.engine; print(os.environ.get('OMP_WAIT_POLICY'))"
    assert python(code) == "None"


def test_the_filter_in_vspipe_runs_with_the_passive_policy(tmp_path, tiny_checkpoint):
    # vspipe brings torch in when the script creates the first Upscale: the case users run
    report = tmp_path / "policy.txt"
    script = tmp_path / "policy.vpy"
    script.write_text(
        "import os, vapoursynth as vs\n"
        "clip = vs.core.std.BlankClip(width=16, height=16, format=vs.RGBS, length=1)\n"
        f"vs.core.rbvsr.Upscale(clip, checkpoint={str(tiny_checkpoint)!r}, device='cpu').set_output()\n"
        f"open({str(report)!r}, 'w').write(os.environ.get('OMP_WAIT_POLICY', 'unset'))\n"
    )
    environment = {k: v for k, v in os.environ.items() if k != POLICY}
    vspipe = os.path.join(os.path.dirname(sys.executable), "vspipe")
    subprocess.run([vspipe, str(script), "--"], env=environment, check=True, capture_output=True)
    assert report.read_text() == "PASSIVE"


# A parallel torch operation, then a pause: threads that spin after it burn CPU during the pause.
SPIN = """
import os, time, vsrealbasicvsr.engine.engine, torch
x = torch.rand(2_000_000)
start = time.process_time()
for _ in range(50):
    x.mul_(1.0000001)
    time.sleep(0.01)
print(os.environ.get("OMP_WAIT_POLICY"), time.process_time() - start, torch.get_num_threads())
"""


def test_importing_the_engine_makes_openmp_wait_passively_unless_the_user_chose():
    policy, passive, threads = python(SPIN).split()
    assert policy == "PASSIVE"
    policy, active, _ = python(SPIN, OMP_WAIT_POLICY="ACTIVE").split()
    assert policy == "ACTIVE"  # the user's choice is kept
    if int(threads) > 1:  # with one thread (one core, OMP_NUM_THREADS=1) nothing spins
        # and OpenMP really read it: no thread spins through the pauses
        assert float(passive) < float(active) / 2, f"CPU seconds: {passive} passive, {active} active"
