"""`vsrealbasicvsr upscale --ray` (vsrealbasicvsr/frontends/ray_runner.py): the job's segments as Ray tasks
on a local Ray cluster started by the tests, with output bytes identical to the one-process run.

Also on a Ray cluster of two nodes started with `ray start` on 127.0.0.1 (a head and a second
node, one CPU each), standing for two machines, and through the command with a Ray instance of
its own. Tests that start Ray in other processes come before those that use this process's
(`local_ray`, for the module's rest), so that no two clusters run at once.

The clip is 12 frames of bikes.mp4 at 64x48 with a scene cut at frame 6 and an AAC track; windows
of 4 frames (split at the cut) make segments of one window each: 3 segments, for 2 workers
(`ray.init(num_cpus=2)`).
FFV1 and bit-exact muxing make equal frames equal files.

A Ray task on the CPU runs torch with the task's one CPU (Ray sets OMP_NUM_THREADS=1), and torch's
CPU results depend on its thread count (by one code value in a few pixels): the one-process run
compared against is the command without --ray with OMP_NUM_THREADS=1 (docs/SCALING.md, "Identical
frames").
"""

import os
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from pathlib import Path

import av
import pytest
from conftest import REPO, make_clip_with_cut
from helpers import free_port, spec_of, wait_for_port

from vsrealbasicvsr import job
from vsrealbasicvsr.frontends import cli, ray_runner

ray = pytest.importorskip("ray", reason='needs Ray: pip install "vsrealbasicvsr[ray]" (make install does)')

CLI = [sys.executable, "-m", "vsrealbasicvsr", "upscale"]
RAY = str(Path(sys.executable).parent / "ray")
WINDOW = 4  # frames per window, so per segment: the 12-frame clip makes 3 segments
OPTIONS = {"model": "realbasicvsr", "max_seq_len": WINDOW, "device": "cpu", "tile": -1}
FLAGS = ["--max-seq-len", str(WINDOW), "--codec", "ffv1", "--device", "cpu", "--tile", "off"]  # OPTIONS, to the command


def ray_spec(clip, output, checkpoint, **flags):
    """The job FLAGS make on the command line, as the Ray runner takes it."""
    return spec_of(clip, output, checkpoint, max_seq_len=WINDOW, **flags)


def session_processes(session: int) -> list[int]:
    """The processes of a session (`os.setsid`): Ray's processes stay in the session that started them."""
    found = []
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                if os.getsid(int(entry)) == session:
                    found.append(int(entry))
            except OSError:  # gone meanwhile
                pass
    return found


def descendants(pid: int) -> list[int]:
    """The processes below `pid` (children, their children, ...)."""
    parents = {}
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                with open(f"/proc/{entry}/stat") as stat:
                    parents[int(entry)] = int(stat.read().rsplit(")", 1)[1].split()[1])
            except OSError:
                pass
    found, frontier = [], [pid]
    while frontier:
        children = [child for child, parent in parents.items() if parent in frontier]
        found += children
        frontier = children
    return found


def command_line(pid: int) -> str:
    try:
        with open(f"/proc/{pid}/cmdline", "rb") as file:
            return file.read().replace(b"\0", b" ").decode(errors="replace")
    except OSError:
        return ""


def run_cli_in_own_session(*args, env_extra=None):
    """The command in a session of its own; afterwards, checks that it left no process running."""
    env = dict(os.environ, PYTHONPATH=str(REPO), **(env_extra or {}))
    process = subprocess.Popen(
        [*CLI, *map(str, args)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=env,
        start_new_session=True,
    )
    stdout, stderr = process.communicate(timeout=600)
    deadline = time.monotonic() + 30
    while session_processes(process.pid) and time.monotonic() < deadline:
        time.sleep(0.2)
    left = session_processes(process.pid)
    for pid in left:
        os.kill(pid, signal.SIGKILL)
    assert not left, f"the command left processes running: {[command_line(pid) for pid in left]}"
    return process.returncode, stdout, stderr


def stop(processes: list[subprocess.Popen]) -> list[str]:
    """Stops `ray start --block` processes (SIGTERM: they stop the Ray processes they began), then
    kills by pid whatever of their sessions is left; returns the command lines of those."""
    for process in processes:
        process.terminate()
    for process in processes:
        try:
            process.wait(30)
        except subprocess.TimeoutExpired:
            process.kill()
    deadline = time.monotonic() + 30
    while any(session_processes(process.pid) for process in processes) and time.monotonic() < deadline:
        time.sleep(0.2)
    left = [pid for process in processes for pid in session_processes(process.pid)]
    commands = []
    for pid in left:
        try:
            commands.append(Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode())
            os.kill(pid, signal.SIGKILL)
        except OSError:
            pass
    return commands


@pytest.fixture(scope="module", autouse=True)
def ray_environment():
    """The Ray processes the module starts (clusters, drivers, workers) with one token of its own, as
    a real cluster's nodes share theirs (Ray's token authentication), so that nothing reads or
    writes ~/.ray; no $RAY_ADDRESS from outside."""
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("RAY_AUTH_MODE", "token")
        patch.setenv("RAY_AUTH_TOKEN", uuid.uuid4().hex)
        patch.delenv("RAY_ADDRESS", raising=False)
        yield


@pytest.fixture(scope="module")
def clip(tmp_path_factory):
    return make_clip_with_cut(tmp_path_factory.mktemp("clip") / "cut.mp4", audio=True)


@pytest.fixture(scope="module")
def reference(clip, tiny_checkpoint, tmp_path_factory):
    """The one-process run's output: the command without --ray, in a process of its own (nothing
    of this one's torch state), with torch on one thread as in a Ray task (OMP_NUM_THREADS=1)."""
    output = tmp_path_factory.mktemp("one_process") / "x4.mkv"
    code, _, stderr = run_cli_in_own_session(
        clip, output, *FLAGS, "--checkpoint", tiny_checkpoint, env_extra={"OMP_NUM_THREADS": "1"}
    )
    assert code == 0, stderr
    return output


@pytest.fixture(scope="module")
def local_ray():
    """A Ray cluster of this machine with 2 CPUs (2 workers), stopped at the end with all its processes.
    Without token authentication: this process read Ray's settings when it imported ray, before
    `ray_environment` set the token mode, and would not send the token its cluster then asks for."""
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("RAY_AUTH_MODE", "disabled")
        ray.init(num_cpus=2, include_dashboard=False, logging_level="ERROR", log_to_driver=False)
        yield
        ray.shutdown()
    deadline = time.monotonic() + 30
    while (
        left := [pid for pid in descendants(os.getpid()) if "ray" in command_line(pid)]
    ) and time.monotonic() < deadline:
        time.sleep(0.2)
    for pid in left:
        os.kill(pid, signal.SIGKILL)
    assert not left, f"ray.shutdown left processes running: {[command_line(pid) for pid in left]}"


def assert_has_audio(output):
    with av.open(str(output)) as container:
        assert [stream.type for stream in container.streams] == ["video", "audio"]
        assert container.streams.audio[0].codec_context.name == "aac"


@pytest.fixture
def two_nodes():
    """ADDRESS of a head and a second node on 127.0.0.1, each in a session of its own; at the end
    both are stopped, and no process of theirs may be left."""
    temp = tempfile.mkdtemp(prefix="rt")  # short: Ray's socket paths live under it
    port = free_port()
    common = ["--block", "--num-cpus=1", "--num-gpus=0", "--node-ip-address=127.0.0.1", "--disable-usage-stats"]
    started = []
    try:
        started.append(
            subprocess.Popen(
                [RAY, "start", "--head", f"--port={port}", "--include-dashboard=false", f"--temp-dir={temp}", *common],
                stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL,
                start_new_session=True,
            )
        )
        wait_for_port(port, 120)
        started.append(
            subprocess.Popen(
                [RAY, "start", f"--address=127.0.0.1:{port}", *common],
                stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL,
                start_new_session=True,
            )
        )
        count = (
            "import ray, sys, time; ray.init(address=sys.argv[1], logging_level='ERROR')\n"
            "alive = lambda: sum(node['Alive'] for node in ray.nodes())\n"
            "deadline = time.monotonic() + 120\n"
            "while alive() < 2 and time.monotonic() < deadline: time.sleep(0.5)\n"
            "print(alive())"
        )
        nodes = subprocess.run(
            [sys.executable, "-c", count, f"127.0.0.1:{port}"], capture_output=True, text=True, timeout=300
        )
        assert nodes.stdout.strip() == "2", nodes.stderr
        yield f"127.0.0.1:{port}"
    finally:
        left = stop(started)
        shutil.rmtree(temp, ignore_errors=True)
    assert not left, f"Ray processes left running: {left}"


def test_two_nodes_share_the_segments_through_the_object_store(clip, tiny_checkpoint, reference, two_nodes, tmp_path):
    output = tmp_path / "x4.mkv"
    code, _, stderr = run_cli_in_own_session(
        clip, output, "--checkpoint", tiny_checkpoint, *FLAGS, "--ray", two_nodes, "--ray-data", "object-store"
    )
    assert code == 0, stderr
    assert "upscale: 3 segments computed on 2 Ray node(s)" in stderr
    assert output.read_bytes() == reference.read_bytes()


def test_a_segment_failing_every_try_fails_the_job_and_resume_completes_it(
    clip, tiny_checkpoint, reference, local_ray, tmp_path
):
    """The failure through the command, with a Ray instance of its own (`--ray` without
    ADDRESS); the resume through the runner on the module's cluster (a second instance of its
    own would only start Ray again)."""
    output = tmp_path / "x4.mkv"
    args = [clip, output, "--checkpoint", tiny_checkpoint, *FLAGS, "--ray"]
    code, _, stderr = run_cli_in_own_session(*args, env_extra={ray_runner.FAIL_SEGMENT_ENV: "1"})
    assert code == 1
    last = stderr.strip().splitlines()[-1]
    assert last.startswith("vsrealbasicvsr upscale: error: segment 1 failed: RuntimeError: segment 1 fails on every")
    assert last.endswith(f"2 of 3 windows are kept in {output}.rbvsr-work, continue with --resume")
    work = tmp_path / "x4.mkv.rbvsr-work"
    assert sorted(path.name for path in work.glob("segment_*")) == ["segment_00000.nut", "segment_00002.nut"]

    events = []
    result = ray_runner.run(ray_spec(clip, output, tiny_checkpoint, resume=True), progress=events.append)
    assert not result.cancelled and result.segments_done == 3
    assert events[0].segments_done == 2  # the kept ones were not computed again
    assert output.read_bytes() == reference.read_bytes()
    assert not work.exists()


def test_an_address_where_no_cluster_listens_is_one_line_and_leaves_nothing(clip, tiny_checkpoint, tmp_path):
    address = f"127.0.0.1:{free_port()}"
    code, _, stderr = run_cli_in_own_session(
        clip, tmp_path / "x4.mkv", "--checkpoint", tiny_checkpoint, "--ray", address
    )
    assert code == 1
    assert stderr.startswith(f"vsrealbasicvsr upscale: error: cannot reach the Ray cluster at {address} (")
    assert stderr.count("\n") == 1
    assert list(tmp_path.iterdir()) == []


def test_shared_folder_run_writes_the_one_process_output(clip, tiny_checkpoint, reference, local_ray, tmp_path):
    output = tmp_path / "x4.mkv"
    events = []
    result = ray_runner.run(ray_spec(clip, output, tiny_checkpoint), data="shared", progress=events.append)
    assert (result.frames, result.segments_done, result.segment_count, result.cancelled) == (12, 3, 3, False)
    assert output.read_bytes() == reference.read_bytes()
    assert_has_audio(output)
    assert not (tmp_path / "x4.mkv.rbvsr-work").exists()
    kinds = [event.kind for event in events]
    assert all(isinstance(kind, job.ProgressKind) for kind in kinds)  # the kinds' one home, as in one process
    assert kinds[0] == "started" and kinds[-1] == "joining"
    assert kinds.count("frame") == 12 and kinds.count("segment_done") == 3
    done = [event.frames_done for event in events]
    assert done == sorted(done) and done[-1] == 12


def test_object_store_run_never_reads_the_inputs_path(clip, tiny_checkpoint, reference, local_ray, tmp_path):
    """Without a shared folder: the input is moved away once the driver has it, so a task that
    read its path would fail; it is put back for the join, which copies its audio."""
    output = tmp_path / "x4.mkv"
    hidden = tmp_path / "hidden.mp4"
    moves = []

    def move_input(event):
        if event.kind == "started":
            os.replace(clip, hidden)
            moves.append("away")
        elif event.kind == "joining":
            os.replace(hidden, clip)
            moves.append("back")

    try:
        ray_runner.run(ray_spec(clip, output, tiny_checkpoint), data="object-store", progress=move_input)
    finally:
        if hidden.exists():
            os.replace(hidden, clip)
    assert moves == ["away", "back"]
    assert output.read_bytes() == reference.read_bytes()
    assert_has_audio(output)


def test_cancel_keeps_finished_segments_that_a_resume_completes(clip, tiny_checkpoint, reference, local_ray, tmp_path):
    output = tmp_path / "x4.mkv"
    cancel = threading.Event()

    def cancel_after_the_first_segment(event):
        if event.kind == "segment_done":
            cancel.set()

    result = ray_runner.run(
        ray_spec(clip, output, tiny_checkpoint), progress=cancel_after_the_first_segment, cancel=cancel
    )
    assert result.cancelled and 1 <= result.segments_done < 3
    work = tmp_path / "x4.mkv.rbvsr-work"
    assert len(list(work.glob("segment_*.nut"))) == result.segments_done and not output.exists()
    events = []
    result = ray_runner.run(ray_spec(clip, output, tiny_checkpoint, resume=True), progress=events.append)
    assert not result.cancelled and result.segments_done == 3
    assert events[0].segments_done >= 1  # the kept segments were not computed again
    assert output.read_bytes() == reference.read_bytes()


def test_a_worker_killed_mid_segment_is_retried_and_the_output_is_the_same(
    clip, tiny_checkpoint, reference, local_ray, tmp_path
):
    output = tmp_path / "x4.mkv"
    work = tmp_path / "x4.mkv.rbvsr-work"
    outcome = {}

    def run():
        try:
            outcome["result"] = ray_runner.run(ray_spec(clip, output, tiny_checkpoint), data="shared")
        except BaseException as error:  # noqa: BLE001 - checked below
            outcome["error"] = error

    runner = threading.Thread(target=run)
    runner.start()
    killed = None
    while runner.is_alive() and killed is None:
        # A segment being written by a worker: partial_NNNNN.<the worker's pid>.<fresh name>.nut
        for partial in work.glob("partial_*.*.*") if work.exists() else []:
            pid = int(partial.name.split(".")[1])
            if command_line(pid).startswith("ray::"):
                os.kill(pid, signal.SIGKILL)
                killed = partial.name
                break
        time.sleep(0.005)
    runner.join(600)
    assert killed is not None, "no worker was caught writing a segment"
    assert "error" not in outcome, outcome.get("error")
    assert outcome["result"].segments_done == 3
    assert output.read_bytes() == reference.read_bytes()


def test_ray_without_ray_installed_is_one_line_naming_the_install(clip, tmp_path, monkeypatch, capsys):
    monkeypatch.setitem(sys.modules, "ray", None)  # `import ray` raises ImportError
    for address in ([], ["127.0.0.1:6379"]):
        code = cli.main(["upscale", str(clip), str(tmp_path / "x4.mkv"), "--ray", *address])
        assert code == 1
        err = capsys.readouterr().err
        assert err == (
            "vsrealbasicvsr upscale: error: --ray needs Ray, which is not installed; "
            'pip install "vsrealbasicvsr[ray]"\n'
        )
    assert list(tmp_path.iterdir()) == []


def test_a_dry_run_of_a_family_model_needs_neither_ray_nor_a_cluster(tmp_path, monkeypatch, capsys):
    """`--ray --dry-run` with BasicVSR++ x1: the plan of the run without --ray (the network, its
    scale, windows from its memory terms) and the Ray line, with Ray not importable and an
    address where nothing listens."""
    import torch
    from conftest import make_clip_with_cut
    from test_family_filter import DRY_RUN_WINDOW, dry_run_lines

    from vsrealbasicvsr.engine import memory
    from vsrealbasicvsr.models import BasicVSRPlusPlusNet

    torch.manual_seed(0)
    checkpoint = tmp_path / "basicvsrpp_x1.pth"
    torch.save(BasicVSRPlusPlusNet(mid_channels=8, num_blocks=1, is_low_res_input=False).state_dict(), checkpoint)
    clip = make_clip_with_cut(tmp_path / "in.mp4")  # 12 frames of 64x48
    budget = memory.window_bytes(DRY_RUN_WINDOW + 2, 48, 64, 8, 4, 1, "BasicVSRPlusPlusNet", 1)
    output = tmp_path / "x1.mkv"
    alone = dry_run_lines(capsys, clip, output, checkpoint, budget)
    monkeypatch.setitem(sys.modules, "ray", None)  # `import ray` raises ImportError
    for address in ([], ["127.0.0.1:9"]):
        on_ray = dry_run_lines(capsys, clip, output, checkpoint, budget, "--ray", *address)
        assert {key: line for key, line in on_ray.items() if key != "ray"} == alone
        where = "the cluster at 127.0.0.1:9" if address else "a Ray instance started on this machine"
        assert on_ray["ray"].startswith(f"ray        the segments become Ray tasks on {where}")
    assert alone["model"].endswith(": BasicVSRPlusPlus x1") and ": 64x48, 12 frames" in alone["output"]
    assert alone["windows"].startswith(f"windows    2: {DRY_RUN_WINDOW} frames each")
    assert sorted(path.name for path in tmp_path.iterdir()) == ["basicvsrpp_x1.pth", "in.mp4"]


def test_a_restoration_model_runs_on_ray_as_in_one_process(clip, local_ray, tmp_path):
    """BasicVSR++ x1 (deformable alignment, output at the input's size) through Ray's workers:
    the one-process command's output, byte for byte."""
    import torch

    from vsrealbasicvsr.models import BasicVSRPlusPlusNet

    torch.manual_seed(0)
    checkpoint = tmp_path / "basicvsrpp_x1.pth"
    torch.save(BasicVSRPlusPlusNet(mid_channels=8, num_blocks=1, is_low_res_input=False).state_dict(), checkpoint)
    one_process = tmp_path / "one_process.mkv"
    code, _, stderr = run_cli_in_own_session(
        clip, one_process, *FLAGS, "--checkpoint", checkpoint, env_extra={"OMP_NUM_THREADS": "1"}
    )
    assert code == 0, stderr
    output = tmp_path / "x1.mkv"
    result = ray_runner.run(ray_spec(clip, output, checkpoint), data="shared")
    assert (result.width, result.height, result.frames) == (64, 48, 12)
    assert output.read_bytes() == one_process.read_bytes()
