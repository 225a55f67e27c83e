"""`vsrealbasicvsr serve`'s API through the framework's test client: upload -> plan -> start ->
progress events -> done -> download, cancel and the queue, delete, bad input, the token, and
paths that try to leave the server's folders.

The clip is 6 frames of examples/sample.mp4 at 64x48 with its audio; windows of 2 frames make
segments of one window each, so a job has 3 segments. The weights are the tiny checkpoint, installed as
the realbasicvsr model's (`tiny_weights_home`). FFV1 keeps the frames as the pipeline made them.
"""

import dataclasses
import errno
import json
import os
import subprocess
import sys
from pathlib import Path

import av
import numpy as np
import pytest
from conftest import WEB_OPTIONS
from starlette.testclient import TestClient
from test_web_restart import wait_for

from vsrealbasicvsr import options
from vsrealbasicvsr.engine import memory
from vsrealbasicvsr.frontends.web import app as web_app
from vsrealbasicvsr.frontends.web import jobs as web_jobs
from vsrealbasicvsr.frontends.web import runner as web_runner
from vsrealbasicvsr.weights import registry

OPTIONS = WEB_OPTIONS
LOCAL = "http://127.0.0.1"


@pytest.fixture
def clip(clip_with_audio):
    return clip_with_audio


@pytest.fixture(autouse=True)
def weights(tiny_weights_home, monkeypatch):
    monkeypatch.setenv("VSREALBASICVSR_HOME", str(tiny_weights_home))


def upload(client, data: bytes, name="clip.mp4"):
    return client.post("/api/uploads", content=data, headers={"X-File-Name": name})


def planned_job(client, clip, options=OPTIONS) -> str:
    response = upload(client, clip.read_bytes())
    assert response.status_code == 201, response.text
    job_id = response.json()["id"]
    response = client.post(f"/api/jobs/{job_id}/plan", json=options)
    assert response.status_code == 200, response.text
    return job_id


def events_of(client, job_id) -> list[dict]:
    """The job's event stream, read to its end (the job's end)."""
    text = client.get(f"/api/jobs/{job_id}/events").text
    return [json.loads(line.removeprefix("data: ")) for line in text.splitlines() if line.startswith("data: ")]


def frames_of(path: Path) -> list[np.ndarray]:
    with av.open(str(path)) as container:
        return [frame.to_ndarray(format="rgb24") for frame in container.decode(video=0)]


def job_files(jobs: Path) -> list[str]:
    """What the jobs folder holds besides the database and the server's lock."""
    return sorted(
        path.name
        for path in jobs.iterdir()
        if not path.name.startswith("jobs.sqlite3") and path.name != web_app.SERVER_LOCK
    )


@pytest.fixture(scope="module")
def finished(clip_with_audio, tiny_weights_home, tmp_path_factory):
    """One job through the API: (jobs folder, job id, its plan, its events, the output's bytes)."""
    jobs = tmp_path_factory.mktemp("jobs")
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("VSREALBASICVSR_HOME", str(tiny_weights_home))
        with TestClient(web_app.create_app(jobs), base_url=LOCAL) as client:
            job_id = planned_job(client, clip_with_audio)
            plan = client.get(f"/api/jobs/{job_id}").json()["plan"]
            assert client.post(f"/api/jobs/{job_id}/start").status_code == 200
            events = events_of(client, job_id)
            output = client.get(f"/api/jobs/{job_id}/output?download=1")
            assert output.status_code == 200
            disposition = output.headers["content-disposition"]
            preview = client.get(f"/api/jobs/{job_id}/preview").json()["preview"]
            picture = client.get(f"/api/jobs/{job_id}/preview.png")
            ranged = client.get(f"/api/jobs/{job_id}/output", headers={"Range": "bytes=100-199"})
    return {
        "jobs": jobs,
        "id": job_id,
        "plan": plan,
        "events": events,
        "output": output.content,
        "disposition": disposition,
        "preview": preview,
        "picture": picture,
        "ranged": ranged,
    }


def test_upload_plan_start_progress_download(finished, clip, clip_with_audio_x4, tmp_path):
    plan = finished["plan"]
    assert plan["device"] == "cpu" and plan["window_count"] == 3 and plan["segments"] == 3
    assert plan["backend"] == "torch"  # the default
    assert plan["output"] == {"width": 256, "height": 192, "frames": 6, "codec": "ffv1", "container": ".mkv"}

    events = finished["events"]
    assert [event["state"] for event in events][-1] == "done"
    assert {event["state"] for event in events[:-1]} <= {"queued", "running"}
    done = [event["frames_done"] for event in events]
    assert done == sorted(done) and done[-1] == 6 and events[-1]["percent"] == 100
    assert any(0 < frames < 6 for frames in done)  # progress came while it ran
    speeds = [(event["fps"], event["eta_s"]) for event in events if event["fps"] is not None]
    assert speeds and all(fps > 0 and eta >= 0 for fps, eta in speeds)  # once a window's work was timed
    windows = [event["window"]["index"] for event in events if event["window"]]
    assert windows == sorted(windows) and windows[-1] == 2

    output = tmp_path / "server.mkv"
    output.write_bytes(finished["output"])
    assert 'attachment; filename="clip_x4.mkv"' == finished["disposition"]
    with av.open(str(output)) as result, av.open(str(clip)) as source:
        video, source_video = result.streams.video[0], source.streams.video[0]
        assert (video.width, video.height) == (4 * source_video.width, 4 * source_video.height)
        assert video.average_rate == source_video.average_rate
        assert len(result.streams.audio) == 1  # the input's audio is kept
    assert len(frames_of(output)) == 6

    # The command line on the same clip with the same options makes the same frames.
    assert all(
        np.array_equal(ours, theirs)
        for ours, theirs in zip(frames_of(output), frames_of(clip_with_audio_x4), strict=True)
    )


def test_download_answers_range_requests_for_playback(finished):
    ranged = finished["ranged"]
    assert ranged.status_code == 206
    assert ranged.content == finished["output"][100:200]
    assert ranged.headers["content-range"] == f"bytes 100-199/{len(finished['output'])}"


def test_preview_is_the_last_frame_beside_its_bicubic(finished):
    assert finished["preview"] == {"frame": 5, "source": "done"}
    picture = finished["picture"]
    assert picture.status_code == 200 and picture.content.startswith(b"\x89PNG")
    from io import BytesIO

    from PIL import Image

    width, height = Image.open(BytesIO(picture.content)).size
    assert width > 2 * 256 and height > 192  # two 256x192 halves under their labels


def test_cancel_keeps_segments_that_continue_and_the_queue_runs_in_order(clip, tmp_path, monkeypatch, finished):
    hold = tmp_path / "hold"
    hold.touch()
    monkeypatch.setenv(web_runner.HOLD_ENV, f"1:{hold}")  # each run waits after its first segment
    jobs = tmp_path / "jobs"
    with TestClient(web_app.create_app(jobs), base_url=LOCAL) as client:
        first, second, third = (planned_job(client, clip) for _ in range(3))
        for job_id in (first, second, third):
            assert client.post(f"/api/jobs/{job_id}/start").status_code == 200
        states = {job["id"]: job for job in client.get("/api/jobs").json()["jobs"]}
        assert states[first]["state"] == "running"  # one per device; the others wait in order
        assert [states[second]["queue_position"], states[third]["queue_position"]] == [1, 2]

        assert client.post(f"/api/jobs/{second}/cancel").json()["state"] == "cancelled"  # queued: at once
        wait_for(client, first, lambda job: job["segments_done"] == 1)  # and held there
        assert client.post(f"/api/jobs/{first}/cancel").status_code == 200
        stopped = events_of(client, first)[-1]
        assert stopped["state"] == "cancelled" and stopped["segments_done"] == 1
        assert client.get(f"/api/jobs/{first}/output").status_code == 409
        wait_for(client, third, lambda job: job["state"] == "running")  # the queue went on
        client.post(f"/api/jobs/{third}/cancel")
        assert events_of(client, third)[-1]["state"] == "cancelled"
        hold.unlink()

        # Started again, the cancelled job continues from its kept segment to the same result.
        assert client.post(f"/api/jobs/{first}/start").status_code == 200
        assert events_of(client, first)[-1]["state"] == "done"
        assert client.get(f"/api/jobs/{first}/output").content == finished["output"]
        # With a job done on the CPU, a plan there comes with a time estimate, from jobs of its
        # frame size, and longer for shorter windows (more context frames to compute).
        estimate = client.get(f"/api/jobs/{planned_job(client, clip)}").json()["plan"]["estimate"]
        assert estimate["seconds"] > 0 and estimate["sure"] and "of 64x48 with realbasicvsr on cpu" in estimate["basis"]
        one_window = client.get(f"/api/jobs/{planned_job(client, clip, {**OPTIONS, 'max_seq_len': 6})}").json()
        assert one_window["plan"]["estimate"]["seconds"] < estimate["seconds"]

        assert client.delete(f"/api/jobs/{first}").status_code == 204
        assert client.get(f"/api/jobs/{first}").status_code == 404
        assert first not in job_files(jobs) and second in job_files(jobs)
        assert [job["id"] for job in client.get("/api/jobs").json()["jobs"]][2:] == [third, second]  # newest first


def test_a_running_job_is_not_deleted(clip, tmp_path, monkeypatch):
    hold = tmp_path / "hold"
    hold.touch()
    monkeypatch.setenv(web_runner.HOLD_ENV, f"1:{hold}")
    with TestClient(web_app.create_app(tmp_path / "jobs"), base_url=LOCAL) as client:
        job_id = planned_job(client, clip)
        client.post(f"/api/jobs/{job_id}/start")
        response = client.delete(f"/api/jobs/{job_id}")
        assert response.status_code == 409 and "cancel it first" in response.json()["error"]
        client.post(f"/api/jobs/{job_id}/cancel")
        assert events_of(client, job_id)[-1]["state"] == "cancelled"
        assert client.delete(f"/api/jobs/{job_id}").status_code == 204


def test_a_job_that_fails_shows_why_and_the_server_goes_on(clip, tmp_path):
    jobs = tmp_path / "jobs"
    with TestClient(web_app.create_app(jobs), base_url=LOCAL) as client:
        job_id = planned_job(client, clip)
        (jobs / job_id / "input.mp4").unlink()  # gone between the plan and the run
        client.post(f"/api/jobs/{job_id}/start")
        failed = events_of(client, job_id)[-1]
        assert failed["state"] == "failed"
        assert failed["error"] == "input clip.mp4 does not exist; check the path"
        listed = client.get("/api/jobs").json()["jobs"]
        assert [(job["state"], job["error"]) for job in listed] == [("failed", failed["error"])]
        assert client.get(f"/api/jobs/{job_id}/output").status_code == 409


@pytest.fixture
def client(tmp_path):
    with TestClient(web_app.create_app(tmp_path / "jobs", max_upload=1_000_000), base_url=LOCAL) as client:
        yield client


def test_not_a_video_is_a_message_and_leaves_nothing(client, tmp_path):
    response = upload(client, b"these are words, not frames", "notes.mp4")
    assert response.status_code == 400
    assert response.json()["error"] == "notes.mp4 is not a video; pass a video file or a folder of PNG/JPEG frames"
    assert job_files(tmp_path / "jobs") == [] and client.get("/api/jobs").json()["jobs"] == []
    response = upload(client, b"", "empty.mp4")
    assert response.status_code == 400 and "empty.mp4 is empty" in response.json()["error"]


def test_a_video_without_frames_is_a_message(client, tmp_path):
    import imageio_ffmpeg

    ffmpeg = imageio_ffmpeg.get_ffmpeg_exe()
    three, audio_only = tmp_path / "three.mkv", tmp_path / "audio.m4a"
    subprocess.run(
        [
            ffmpeg,
            "-v",
            "error",
            "-f",
            "lavfi",
            "-i",
            "testsrc=size=64x48",
            "-frames:v",
            "3",
            "-c:v",
            "ffv1",
            str(three),
        ],
        check=True,
    )
    subprocess.run([ffmpeg, "-v", "error", "-f", "lavfi", "-i", "sine", "-t", "0.2", str(audio_only)], check=True)
    data = three.read_bytes()
    # The header and the first cluster's ID and size: a video stream, and no frame.
    header_only = data[: data.index(b"\x1f\x43\xb6\x75") + 12]
    response = upload(client, header_only, "no_frames.mkv")
    assert response.status_code == 400 and "no_frames.mkv has no video frames" in response.json()["error"]
    response = upload(client, audio_only.read_bytes(), "audio.m4a")
    assert response.status_code == 400 and "audio.m4a has no video stream" in response.json()["error"]
    assert job_files(tmp_path / "jobs") == []


def test_an_upload_over_max_upload_is_refused_while_streaming(client, tmp_path):
    response = upload(client, bytes(1_000_001), "big.mp4")  # declared too large: refused before reading
    assert response.status_code == 413 and "--max-upload" in response.json()["error"]

    def chunks():  # no Content-Length: refused once the bytes pass the limit
        for _ in range(20):
            yield bytes(100_000)

    response = client.post("/api/uploads", content=chunks(), headers={"X-File-Name": "big.mp4"})
    assert response.status_code == 413 and "--max-upload" in response.json()["error"]
    assert job_files(tmp_path / "jobs") == []


def test_a_full_disk_is_a_message_and_the_server_keeps_serving(client, clip, tmp_path, monkeypatch):
    def full(file, chunk):
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    monkeypatch.setattr(web_app, "write_chunk", full)
    response = upload(client, clip.read_bytes())
    assert response.status_code == 507 and "disk" in response.json()["error"]
    assert job_files(tmp_path / "jobs") == []
    monkeypatch.undo()
    monkeypatch.setenv("VSREALBASICVSR_HOME", os.environ.get("VSREALBASICVSR_HOME", ""))
    assert upload(client, clip.read_bytes()).status_code == 201


@pytest.mark.parametrize(
    "options, message",
    [
        ({"max_seq_len": -1}, "max_seq_len must be >= 0"),
        ({"tile": 8}, "smaller than the minimum"),
        ({"device": "quantum"}, "unknown device 'quantum'"),
        ({"checkpoint": "/etc/passwd"}, "unknown option checkpoint"),  # a path on the server
        ({"overlap": -1}, "overlap must be >= 0"),
        ({"crf": 52}, "crf of libx264 must be a whole number from 0 to 51"),
        ({"codec": "prores"}, "unknown codec 'prores'"),
        ({"codec": "ffv1", "crf": 18}, "crf applies to libx264"),
        ({"model": "nope"}, "unknown model 'nope'"),
        ({"backend": "tensorrt"}, "unknown backend 'tensorrt'"),
    ],
)
def test_bad_options_are_messages(client, clip, options, message):
    response = upload(client, clip.read_bytes())
    job_id = response.json()["id"]
    assert client.get(f"/api/jobs/{job_id}").json()["plan"] is None
    response = client.post(f"/api/jobs/{job_id}/plan", json=options)
    assert response.status_code == 400 and message in response.json()["error"], response.text
    assert client.post(f"/api/jobs/{job_id}/start").status_code == 409  # not planned


def test_the_form_is_every_option_of_options_py_but_paths(client):
    form = client.get("/api/config").json()
    asked = {option.name: option for option in options.fields() if option.metadata["kind"] != "path"}
    assert set(form["options"]) == set(asked) and set(form["output"]) == {"codec", "crf"}
    for name, field in form["options"].items():
        about = asked[name].metadata
        assert field["help"] == about["help"] or name == "tile"  # the tile's, in the page's words
        assert field.get("min") == about["minimum"]
    assert (
        form["options"]["tile"]["min"] == memory.MIN_TILE
        and f"at least {memory.MIN_TILE}" in form["options"]["tile"]["help"]
    )
    assert list(form["options"]["precision"]["choices"]) == list(options.PRECISIONS)
    assert form["options"]["device"]["suggestions"] == list(options.DEVICES)
    assert form["options"]["scene_split"] | {"kind": "flag", "default": True} == form["options"]["scene_split"]
    assert form["output"]["crf"]["max"] == {"libx264": web_jobs.CRF_CODECS["libx264"]}  # ffv1 takes none


def test_a_request_with_the_defaults_written_out_is_the_same_request():
    written_out = {**OPTIONS, "overlap": 8, "scene_split": True, "precision": None, "crf": ""}
    assert web_jobs.parse_request(written_out) == web_jobs.parse_request(OPTIONS)
    assert web_jobs.parse_request(OPTIONS)["options"] == {"max_seq_len": 2, "device": "cpu", "tile": -1}
    # The model stays, the registry's default too: the page may start with another one.
    default_model = {**OPTIONS, "model": registry.DEFAULT_MODEL}
    assert web_jobs.parse_request(default_model)["options"]["model"] == registry.DEFAULT_MODEL


def test_an_option_added_to_options_py_comes_to_the_page(client, monkeypatch):
    added = dataclasses.field(default=3, metadata=options._about("int", "A new option.", minimum=2))
    added.name = "new_option"
    monkeypatch.setattr(options, "fields", lambda fields=options.fields: (*fields(), added))
    field = client.get("/api/config").json()["options"]["new_option"]
    assert field == {
        "kind": "number",
        "default": 3,
        "default_text": "3",
        "help": "A new option.",
        "main": False,
        "min": 2,
    }


def test_the_page_offers_every_backend_and_the_plan_names_the_chosen_one(client, clip):
    backend = client.get("/api/config").json()["options"]["backend"]
    assert list(backend["choices"]) == ["torch", "openvino"] and backend["default"] == "torch"
    job_id = planned_job(client, clip, {**OPTIONS, "backend": "openvino"})
    plan = client.get(f"/api/jobs/{job_id}").json()["plan"]
    assert (plan["backend"], plan["device"], plan["precision"]) == ("openvino", "cpu", "fp32")


def test_a_token_is_needed_on_every_request(tmp_path):
    app = web_app.create_app(tmp_path / "jobs", token="s3cret")
    with TestClient(app, base_url="http://192.0.2.1") as client:
        for path in (
            "/",
            "/api/jobs",
            "/api/config",
            "/api/jobs/0123456789abcdef/output",
            "/api/jobs/0123456789abcdef/events",
            "/static/app.js",
        ):
            response = client.get(path)
            assert response.status_code == 401 and "token" in response.json()["error"], path
        assert client.post("/api/uploads", content=b"x").status_code == 401
        assert client.get("/api/jobs?token=wrong").status_code == 401
        assert client.get("/api/jobs", headers={"X-Token": "s3cret"}).status_code == 200
        page = client.get("/?token=s3cret")
        assert page.status_code == 200 and "rbvsr_token=s3cret" in page.headers["set-cookie"]
        assert client.get("/api/jobs").status_code == 200  # the page's cookie


def test_without_a_token_only_loopback_names_and_same_origin_pages(client):
    assert client.get("/api/jobs").status_code == 200
    assert client.get("/api/jobs", headers={"Host": "localhost:8765"}).status_code == 200
    response = client.get("/api/jobs", headers={"Host": "rebound.example:8765"})
    assert response.status_code == 403 and "127.0.0.1" in response.json()["error"]
    response = client.post("/api/uploads", content=b"x", headers={"Origin": "http://evil.example"})
    assert response.status_code == 403 and "evil.example" in response.json()["error"]


def test_paths_never_leave_the_server_folders(tmp_path, clip):
    inputs, outside = tmp_path / "inputs", tmp_path / "outside"
    inputs.mkdir()
    outside.mkdir()
    (outside / "secret.mp4").write_bytes(clip.read_bytes())
    (inputs / "clip.mp4").write_bytes(clip.read_bytes())
    (inputs / "link.mp4").symlink_to(outside / "secret.mp4")
    jobs = tmp_path / "jobs"
    with TestClient(web_app.create_app(jobs, input_dir=inputs), base_url=LOCAL) as client:
        for name in (
            "../outside/secret.mp4",
            str(outside / "secret.mp4"),
            "link.mp4",
            "clip.mp4/../../outside/secret.mp4",
        ):
            response = client.post("/api/inputs/pick", json={"name": name})
            assert response.status_code == 404, name
        for path in (
            "/api/jobs/..%2F..%2Fjobs.sqlite3",
            "/api/jobs/../../etc/passwd",
            "/static/../app.py",
            "/static/%2e%2e/app.py",
            "/api/jobs/ABCDEF0123456789",
        ):
            assert client.get(path).status_code == 404, path
        # an upload's name is only shown: the file gets a name of the server's
        response = upload(client, clip.read_bytes(), "../../escaped.mp4")
        assert response.status_code == 201 and response.json()["name"] == "escaped.mp4"
        assert not (tmp_path / "escaped.mp4").exists() and not list(tmp_path.rglob("escaped.mp4"))
        # a file of --input-dir is picked by its listed name, and stays when its job is deleted
        assert client.get("/api/inputs").json()["files"] == ["clip.mp4", "link.mp4"]
        picked = client.post("/api/inputs/pick", json={"name": "clip.mp4"})
        assert picked.status_code == 201 and picked.json()["uploaded"] == 0
        assert client.delete(f"/api/jobs/{picked.json()['id']}").status_code == 204
        assert (inputs / "clip.mp4").is_file()


def test_serve_says_what_is_wrong_before_serving(tmp_path, capsys, monkeypatch):
    import socket

    import vsrealbasicvsr.frontends.web
    from vsrealbasicvsr.frontends import cli

    with socket.socket() as taken:  # every call gets a port in use: none of them can serve
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = str(taken.getsockname()[1])
        jobs = ["--jobs", str(tmp_path / "jobs"), "--port", port]
        assert cli.main(["serve", *jobs]) == 1
        assert f"vsrealbasicvsr serve: error: cannot serve on 127.0.0.1:{port}" in capsys.readouterr().err
        assert cli.main(["serve", *jobs, "--max-upload", "12Q"]) == 1
        assert "--max-upload '12Q' is not a size" in capsys.readouterr().err
        assert cli.main(["serve", *jobs, "--input-dir", str(tmp_path / "missing")]) == 1
        assert "is not a folder" in capsys.readouterr().err
        for name in [name for name in sys.modules if name.split(".")[0] in ("starlette", "uvicorn")]:
            monkeypatch.setitem(sys.modules, name, None)  # the web extra is not installed
        monkeypatch.setitem(sys.modules, "starlette", None)
        monkeypatch.delitem(sys.modules, "vsrealbasicvsr.frontends.web.app")
        monkeypatch.delattr(vsrealbasicvsr.frontends.web, "app")
        assert cli.main(["serve", *jobs]) == 1
        assert "needs starlette; pip install 'vsrealbasicvsr[web]'" in capsys.readouterr().err


def test_the_page_lists_the_family_with_scales_and_names_downloads_by_scale(client):
    models = client.get("/api/config").json()["options"]["model"]["choices"]
    assert set(models) == set(registry.MODELS)
    assert models["iconvsr-reds4"]["scale"] == 4 and models["basicvsrpp-ntire-decompress-track1"]["scale"] == 1
    assert models["basicvsrpp-ntire-decompress-track1"]["description"].startswith("x1, restoring compressed video")
    restored = {
        "name": "clip.mp4",
        "request": {"codec": "ffv1", "options": {"model": "basicvsrpp-ntire-decompress-track1"}},
    }
    assert web_jobs.download_name(restored) == "clip_x1.mkv"


def test_a_restoration_model_runs_through_the_page_at_the_inputs_size(clip, tmp_path, monkeypatch):
    """BasicVSR++ x1 (deformable alignment, output at the input's size) as a registry model of
    the page: planned, run and downloaded at 64x48, frame for frame what the job API makes of the
    same clip with the same weights and options."""
    import torch
    from helpers import spec_of

    from vsrealbasicvsr import job
    from vsrealbasicvsr.models import BasicVSRPlusPlusNet

    name = "basicvsrpp-ntire-decompress-track1"
    home = tmp_path / "home"
    home.mkdir()
    weights = home / registry.MODELS[name].filename
    torch.manual_seed(0)
    torch.save(BasicVSRPlusPlusNet(mid_channels=8, num_blocks=1, is_low_res_input=False).state_dict(), weights)
    monkeypatch.setenv("VSREALBASICVSR_HOME", str(home))
    with TestClient(web_app.create_app(tmp_path / "jobs"), base_url=LOCAL) as client:
        job_id = planned_job(client, clip, {**OPTIONS, "model": name})
        plan = client.get(f"/api/jobs/{job_id}").json()["plan"]
        assert (plan["output"]["width"], plan["output"]["height"], plan["output"]["frames"]) == (64, 48, 6)
        assert client.post(f"/api/jobs/{job_id}/start").status_code == 200
        assert events_of(client, job_id)[-1]["state"] == "done"
        output = client.get(f"/api/jobs/{job_id}/output?download=1")
        assert output.headers["content-disposition"] == 'attachment; filename="clip_x1.mkv"'
    page = tmp_path / "page.mkv"
    page.write_bytes(output.content)
    alone = tmp_path / "alone.mkv"
    job.run(spec_of(clip, alone, weights))
    frames = frames_of(page)
    assert len(frames) == 6 and frames[0].shape == (48, 64, 3)
    assert all(np.array_equal(ours, theirs) for ours, theirs in zip(frames, frames_of(alone), strict=True))
