"""`vsrealbasicvsr upscale --ray`: the job's segments as Ray tasks on the GPUs (or CPUs) of one
or many machines, with frames identical to one process (docs/SCALING.md).

The driver (this process) opens the job (`job.open_job`: the lock, the scene cuts found once,
job.json), submits one task per unfinished segment, shows one progress bar, and joins the
segments as the single-process run does. Each task runs `job.write_segment`. Where the data
lives (`DATA_MODES`): "shared", workers read the input and write the segments through paths
every node sees; "object-store", the input goes to each node once through Ray's object store and
segments come back as bytes. The weights always travel through the object store.
"""

from __future__ import annotations

import hashlib
import logging
import os
import secrets
import shutil
import socket
import sys
import tempfile
import threading
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .. import job
from ..safe_files import digest_file, own_folder, write_new

DATA_MODES = ("shared", "object-store")
INSTALL_HINT = 'pip install "vsrealbasicvsr[ray]"'
# Tries of a segment after its first: a worker that died (killed, out of memory, node lost) or
# an error other than the user's (UpscaleError, which would only fail again).
RETRIES = 3
# How often the driver asks for the frames done, between segments.
POLL_S = 0.5
# How long a HOST:PORT may take to accept a connection before the driver gives up on it.
CONNECT_TIMEOUT_S = 10
# The folder under each node's temporary folder that holds its copies of jobs' files: one per
# user (mode 0700), then one per job.
NODE_COPIES = "vsrealbasicvsr-ray"
# Test hook: the task of this segment raises on every try.
FAIL_SEGMENT_ENV = "VSREALBASICVSR_RAY_FAIL_SEGMENT"


def import_ray():
    """The ray module; UpscaleError naming the install command when it is missing."""
    try:
        import ray
    except ImportError:
        raise job.UpscaleError(f"--ray needs Ray, which is not installed; {INSTALL_HINT}") from None
    return ray


# -- on the workers -------------------------------------------------------------------------------


@dataclass(frozen=True)
class NodeCopies:
    """The job's files as Ray objects, copied once per node into a private folder of its
    temporary folder (`node_folder`): the weights always, the video file without a shared folder
    (else None). A copy is used only when its sha256 is the driver's (`SegmentJob`)."""

    key: str  # names the node's folder of this job's copies: random, so never guessed beforehand
    weights: Any  # ObjectRef of the weights file's bytes
    weights_sha256: str
    source: Any | None  # ObjectRef of the video file's bytes
    source_sha256: str
    source_name: str

    def folder(self) -> Path:
        return node_folder() / self.key

    def on_this_node(self) -> tuple[Path, Path | None]:
        """(weights, video file) on this node, written by the first task that needs them: into
        new files of a folder only this user can enter, renamed into place once their bytes have
        the driver's sha256. A copy already there is checked the same way, and replaced when it
        does not match."""
        import ray

        folder = self.folder()
        own_folder(folder, private=True)
        paths = []
        for name, ref, sha256 in (
            ("weights.pth", self.weights, self.weights_sha256),
            (self.source_name, self.source, self.source_sha256),
        ):
            path = folder / name
            if ref is not None and not _holds(path, sha256):
                data = ray.get(ref)
                if hashlib.sha256(data).hexdigest() != sha256:
                    raise job.UpscaleError(f"{name} came through Ray's object store changed; run the job again")
                write_new(path, data)  # tasks on one node may race here: each writes the same bytes
            paths.append(path if ref is not None else None)
        return paths[0], paths[1]


def node_folder() -> Path:
    """This user's private folder of job copies in this node's temporary folder (made here,
    mode 0700; UpscaleError when one there is a link, another user's or open to others)."""
    folder = Path(tempfile.gettempdir()) / f"{NODE_COPIES}-{os.geteuid()}"
    try:
        own_folder(folder, private=True)
    except OSError as error:
        raise job.UpscaleError(
            f"cannot keep the job's copies on this node ({socket.gethostname()}): "
            f"{error.strerror or error}; remove {folder}, or set TMPDIR to a folder of your own"
        ) from None
    return folder


def _holds(path: Path, sha256: str) -> bool:
    try:
        return digest_file(path)[1] == sha256
    except OSError:
        return False


@dataclass(frozen=True)
class SegmentWritten:
    """A task's result: segment `index` is done on `node`, with these {size, sha256}; `data` are
    its bytes without a shared folder."""

    index: int
    node: str
    written: dict
    data: bytes | None


@dataclass(frozen=True)
class SegmentFailed:
    """A task's result for an UpscaleError: the user's to fix, so not tried again."""

    index: int
    message: str


class FrameCounter:
    """A Ray actor: the frames each segment's task has handed to ffmpeg (the most any try did)."""

    def __init__(self) -> None:
        self.frames: dict[int, int] = {}

    def report(self, index: int, frames: int) -> None:
        self.frames[index] = max(self.frames.get(index, 0), frames)

    def counts(self) -> dict[int, int]:
        return self.frames


def write_segment_task(unit: job.SegmentJob, index: int, copies: NodeCopies, counter) -> SegmentWritten | SegmentFailed:
    """One segment on a Ray worker (`job.write_segment`): into the shared work folder, or into a
    folder of its own whose segment goes back as bytes."""
    import ray

    if os.environ.get(FAIL_SEGMENT_ENV) == str(index):
        raise RuntimeError(f"segment {index} fails on every try ({FAIL_SEGMENT_ENV}={index}, a test hook)")
    node = ray.get_runtime_context().get_node_id()
    handed = [0]

    def frame_done(frame) -> None:
        handed[0] += 1
        counter.report.remote(index, handed[0])

    try:
        weights, source = copies.on_this_node()
        if source is None:
            _, written = job.write_segment(
                unit, index, checkpoint=weights, frame_done=frame_done, partial_tag=f".{os.getpid()}"
            )
            return SegmentWritten(index, node, written, None)
        with tempfile.TemporaryDirectory(prefix="vsrealbasicvsr-segment-", dir=copies.folder()) as work:
            path, written = job.write_segment(
                unit, index, work=Path(work), source=source, checkpoint=weights, frame_done=frame_done
            )
            return SegmentWritten(index, node, written, path.read_bytes())
    except job.UpscaleError as error:
        return SegmentFailed(index, str(error))


def remove_node_copies(key: str) -> None:
    try:
        folder = node_folder()
    except job.UpscaleError:
        return  # nothing of ours is there
    shutil.rmtree(folder / key, ignore_errors=True)


# -- on the driver ---------------------------------------------------------------------------------


def run(
    spec: job.JobSpec,
    address: str | None = None,
    data: str = "shared",
    progress: Callable[[job.JobProgress], None] | None = None,
    cancel: threading.Event | None = None,
) -> job.JobResult:
    """Runs the job with its segments as Ray tasks, as `job.run` does in one process: the same
    output bytes, the same progress events (without the window of a "frame"), cancel and resume.

    Connects to the Ray cluster at `address` (None: Ray's own choice, `ray.init()`: $RAY_ADDRESS,
    else a cluster `ray start` began on this machine, else a new one on this machine), unless this
    process is connected already. `data` is one of DATA_MODES. UpscaleError for what the user can
    fix, with finished segments kept for a resume; JobInterrupted for Ctrl-C."""
    ray = import_ray()
    if data not in DATA_MODES:
        raise job.UpscaleError(f"unknown --ray-data {data!r}; use one of {', '.join(DATA_MODES)}")
    if data == "object-store" and spec.folder_out:
        raise job.UpscaleError(
            "--ray-data object-store sends video segments only; give OUTPUT an extension "
            "(e.g. .mkv), or write PNG frames into a shared folder (--ray-data shared)"
        )
    connected_here = not ray.is_initialized()
    if connected_here:
        _connect(ray, address)  # before the job is opened: an unreachable cluster leaves no work folder
    try:
        with job.open_job(spec) as opened:
            return _run(ray, opened, data, progress or (lambda event: None), cancel or threading.Event())
    finally:
        if connected_here:
            ray.shutdown()


def _connect(ray, address: str | None) -> None:
    """ray.init, with UpscaleError when the cluster cannot be reached or started; a HOST:PORT that
    takes no connection is refused at once (Ray itself would keep trying for minutes)."""
    where = address or "this machine"
    host, _, port = (address or "").rpartition(":")
    if host and port.isdigit() and "://" not in address:
        try:
            socket.create_connection((host, int(port)), timeout=CONNECT_TIMEOUT_S).close()
        except OSError as error:
            raise job.UpscaleError(
                f"cannot reach the Ray cluster at {address} ({error.strerror or error}); check "
                "the address, or start the cluster's head there with `ray start --head`"
            ) from None
    try:
        # The workers' own output stays in Ray's logs: what fails comes back with the task.
        ray.init(address=address, logging_level=logging.ERROR, log_to_driver=False, include_dashboard=False)
    except (ConnectionError, ValueError, RuntimeError, ray.exceptions.RayError) as error:
        ray.shutdown()  # whatever the attempt started
        reason = (str(error).splitlines() or [type(error).__name__])[0]
        raise job.UpscaleError(
            f"cannot start or reach the Ray cluster at {where} ({reason}); check the address; "
            "a cluster with token authentication needs RAY_AUTH_MODE=token and its token here "
            "(docs/SCALING.md)"
        ) from None


def _run(ray, opened: job.OpenJob, data: str, report, cancel: threading.Event) -> job.JobResult:
    spec, unit, segments = opened.spec, opened.unit, opened.segments
    pending = opened.pending()
    finished_frames = sum(segments.frames_in(index) for index in range(segments.count) if index not in pending)
    counts = job.ProgressCounts(
        unit.frames, segments.count, unit.window, finished_frames, segments.count - len(pending)
    )
    copies = _node_copies(ray, unit, data)  # before "started": from then on, no task reads the input's path
    report(counts.event(job.ProgressKind.STARTED))
    counter = ray.remote(num_cpus=0)(FrameCounter).remote()
    # A GPU each where the cluster has them, unless the job was told to run on the CPU.
    gpu = ray.cluster_resources().get("GPU", 0) >= 1 and spec.upscale_options.get("device") != "cpu"
    task = ray.remote(write_segment_task).options(
        num_gpus=1 if gpu else 0, num_cpus=1, max_retries=RETRIES, retry_exceptions=True, scheduling_strategy="SPREAD"
    )
    unit_ref = ray.put(unit)
    running = {task.remote(unit_ref, index, copies, counter): index for index in pending}
    failures: dict[int, str] = {}
    nodes: set[str] = set()
    try:
        while running:
            ready, _ = ray.wait(list(running), num_returns=len(running), timeout=POLL_S)
            for ref in ready:
                index = running.pop(ref)
                try:
                    result = ray.get(ref)
                except ray.exceptions.RayError as error:
                    failures[index] = _reason(ray, error)
                    continue
                if isinstance(result, SegmentFailed):
                    failures[index] = result.message
                    continue
                try:
                    if result.data is not None:
                        opened.store(index, result.data)
                        if opened.segments.recorded(index) != result.written:
                            raise job.UpscaleError(
                                f"segment {index} came back changed from its worker; continue with --resume"
                            )
                    else:
                        opened.accept(index, result.written)
                except job.UpscaleError as error:
                    failures[index] = str(error)
                    continue
                nodes.add(result.node)
                finished_frames += segments.frames_in(index)
                counts.segments_done += 1
                _report_frames(report, counts, finished_frames, {})
                report(counts.event(job.ProgressKind.SEGMENT_DONE, segment=index))
            if running:
                handed = ray.get(counter.counts.remote())  # frames each running task handed to ffmpeg
                _report_frames(
                    report,
                    counts,
                    finished_frames,
                    {index: min(handed.get(index, 0), segments.frames_in(index)) for index in running.values()},
                )
            if cancel.is_set() and running:
                _cancel(ray, running)
                return job.JobResult(
                    spec.output, opened.width, opened.height, unit.frames, True, counts.segments_done, segments.count
                )
    except KeyboardInterrupt:
        _cancel(ray, running)
        raise job.JobInterrupted(counts.segments_done, segments.count, spec.work) from None
    finally:
        ray.kill(counter)
        _remove_copies(ray, copies)
    if failures:
        index = min(failures)
        others = f" (and {len(failures) - 1} more)" if len(failures) > 1 else ""
        raise job.UpscaleError(
            f"segment {index} failed{others}: {failures[index]}; {counts.segments_done} of "
            f"{segments.count} windows are kept in {spec.work}, continue with --resume"
        )
    if not spec.quiet and nodes:
        print(f"upscale: {len(pending)} segments computed on {len(nodes)} Ray node(s)", file=sys.stderr)
    report(counts.event(job.ProgressKind.JOINING))
    return opened.join()


def _report_frames(report, counts: job.ProgressCounts, finished_frames: int, running_counts: dict[int, int]) -> None:
    """A "frame" event for each frame done since the last report (frames_done only grows)."""
    now = finished_frames + sum(running_counts.values())
    while counts.frames_done < now:
        counts.frames_done += 1
        report(counts.event(job.ProgressKind.FRAME))


def _node_copies(ray, unit: job.SegmentJob, data: str) -> NodeCopies:
    """The weights and (object-store) the video file as Ray objects; UpscaleError when either
    is no longer the file the job began with."""
    objects = []
    for path, sha256, wanted in (
        (job.weights_file(unit.spec.upscale_options), unit.weights_sha256, True),
        (unit.source, unit.source_sha256, data == "object-store"),
    ):
        if not wanted:
            objects.append(None)
            continue
        content = path.read_bytes()
        if hashlib.sha256(content).hexdigest() != sha256:
            raise job.UpscaleError(f"{path} changed since the job began; start the job over")
        objects.append(ray.put(content))
    return NodeCopies(
        secrets.token_hex(8),
        objects[0],
        unit.weights_sha256,
        objects[1],
        unit.source_sha256,
        "input" + unit.source.suffix,
    )


def _remove_copies(ray, copies: NodeCopies) -> None:
    """Removes the job's copies from every node that is still there."""
    from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy

    remove = ray.remote(remove_node_copies)
    on_node = [NodeAffinitySchedulingStrategy(node["NodeID"], soft=False) for node in ray.nodes() if node.get("Alive")]
    cleanups = [remove.options(num_cpus=0, scheduling_strategy=strategy).remote(copies.key) for strategy in on_node]
    try:
        ray.get(cleanups, timeout=60)
    except ray.exceptions.RayError:
        pass  # a node gone meanwhile took its copies with it (or keeps them in its temporary folder)


def _cancel(ray, running: dict) -> None:
    for ref in running:
        ray.cancel(ref, force=True)


def _reason(ray, error: Exception) -> str:
    """One line on why a task failed on its every try."""
    if isinstance(error, ray.exceptions.RayTaskError) and error.cause is not None:
        cause = error.cause
        return f"{type(cause).__name__}: {(str(cause).splitlines() or [''])[0]} (on each of {RETRIES + 1} tries)"
    if isinstance(error, (ray.exceptions.WorkerCrashedError, ray.exceptions.NodeDiedError)):
        return f"its worker died on each of {RETRIES + 1} tries (killed, out of memory, or its node lost)"
    return (str(error).splitlines() or [type(error).__name__])[0]
