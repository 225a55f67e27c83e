"""`vsrealbasicvsr serve` as a process: killed mid-job, started again, it finishes the job from
its finished segments, and the output equals an uninterrupted run's; off loopback it makes up a
token and prints it with the address.

The clip, options and weights are test_web.py's (conftest: 6 frames, windows of 2, 3 segments,
FFV1).
"""

import json
import os
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

import pytest
from conftest import WEB_OPTIONS
from helpers import free_port

from vsrealbasicvsr.frontends.web import runner as web_runner

VSREALBASICVSR = Path(sys.executable).parent / "vsrealbasicvsr"


def call(base: str, method: str, path: str, body: bytes | None = None, headers=None) -> tuple[int, bytes]:
    request = urllib.request.Request(base + path, data=body, method=method, headers=headers or {})
    try:
        with urllib.request.urlopen(request, timeout=60) as response:
            return response.status, response.read()
    except urllib.error.HTTPError as error:
        return error.code, error.read()


def call_json(base: str, method: str, path: str, value=None) -> dict:
    status, body = call(
        base, method, path, None if value is None else json.dumps(value).encode(), {"Content-Type": "application/json"}
    )
    assert status < 300, body
    return json.loads(body)


def start_server(arguments: list[str], env: dict) -> subprocess.Popen:
    """The server, once it answers (its address line read from stderr)."""
    process = subprocess.Popen([str(VSREALBASICVSR), "serve", *arguments], env=env, stderr=subprocess.PIPE, text=True)
    process.address = process.stderr.readline()
    assert "open http://" in process.address, process.address + process.stderr.read()
    base = process.address.split("open ")[1].split()[0].split("?")[0].rstrip("/")
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        try:
            call(base, "GET", "/api/config")
            return process
        except OSError:
            time.sleep(0.2)
    raise AssertionError("the server did not answer")


def wait_for(server, job_id: str, condition, timeout=300) -> dict:
    """The job once `condition(job)` holds (polled), from `server`: a server's base URL, or a
    TestClient of the app."""
    path = f"/api/jobs/{job_id}"
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        job = call_json(server, "GET", path) if isinstance(server, str) else server.get(path).json()
        if condition(job):
            return job
        time.sleep(0.2)
    raise AssertionError(f"job {job_id} did not get there: {job}")


@pytest.fixture
def env(tiny_weights_home):
    return {**os.environ, "VSREALBASICVSR_HOME": str(tiny_weights_home)}


def test_a_server_killed_mid_job_finishes_it_when_started_again(tmp_path, env, clip_with_audio, clip_with_audio_x4):
    clip = clip_with_audio
    jobs, port = tmp_path / "jobs", free_port()
    base = f"http://127.0.0.1:{port}"
    hold = tmp_path / "hold"
    hold.touch()
    server = start_server(["--jobs", str(jobs), "--port", str(port)], {**env, web_runner.HOLD_ENV: f"1:{hold}"})
    try:
        status, body = call(base, "POST", "/api/uploads", clip.read_bytes(), {"X-File-Name": "clip.mp4"})
        assert status == 201, body
        job_id = json.loads(body)["id"]
        call_json(base, "POST", f"/api/jobs/{job_id}/plan", WEB_OPTIONS)
        call_json(base, "POST", f"/api/jobs/{job_id}/start")
        wait_for(base, job_id, lambda job: job["segments_done"] == 1)  # held after its first segment
    finally:
        server.send_signal(signal.SIGKILL)
        server.wait()
    work = jobs / job_id / "output.mkv.rbvsr-work"
    assert (work / "segment_00000.nut").is_file() and not (jobs / job_id / "output.mkv").exists()

    server = start_server(["--jobs", str(jobs), "--port", str(port)], env)
    try:
        job = wait_for(base, job_id, lambda job: job["state"] in ("done", "failed", "cancelled"))
        assert job["state"] == "done", job
        status, output = call(base, "GET", f"/api/jobs/{job_id}/output")
        assert status == 200
    finally:
        server.send_signal(signal.SIGINT)
        assert server.wait(timeout=30) == 0  # Ctrl-C ends it quietly

    assert output == clip_with_audio_x4.read_bytes()  # an uninterrupted run's, by the command


def test_off_loopback_the_server_makes_up_a_token_and_prints_it(tmp_path, env):
    port = free_port()
    server = start_server(["--jobs", str(tmp_path / "jobs"), "--host", "127.0.0.2", "--port", str(port)], env)
    try:
        address = server.address.split("open ")[1].split()[0]
        assert address.startswith(f"http://127.0.0.2:{port}/?token=") and len(address.split("=")[1]) >= 24
        base = f"http://127.0.0.2:{port}"
        assert call(base, "GET", "/api/jobs")[0] == 401
        assert call(base, "GET", "/api/jobs?token=" + address.split("=")[1])[0] == 200
    finally:
        server.send_signal(signal.SIGINT)
        assert server.wait(timeout=30) == 0  # Ctrl-C ends it quietly
