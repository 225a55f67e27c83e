"""The page of `vsrealbasicvsr serve` in a real browser: Debian's chromium (which `make test`
installs), driven by Playwright. Upload a small real clip, plan, start, watch the progress to
100 %, play and download the result. The page mid-job is saved as a screenshot: into the
test's folder, or where VSREALBASICVSR_WEB_SCREENSHOT says (a test run does not change a
tracked file unasked; the README's pictures, with real weights, come from tools/web-screenshots).

The server holds the job after its first segment (the runner's test hook) so that the picture
shows a job in progress; the clip is the street of examples/sample.mp4, 6 frames at 64x48, with
the tiny checkpoint as the realbasicvsr model's weights.
"""

import os
import signal
from pathlib import Path

import av
import pytest
from conftest import REPO, make_clip_with_audio
from helpers import free_port
from test_web_restart import start_server

from vsrealbasicvsr.frontends.web import runner as web_runner

CHROMIUM = Path("/usr/bin/chromium")
SCREENSHOT_ENV = "VSREALBASICVSR_WEB_SCREENSHOT"
# Milliseconds: a job of the tiny model on 2 busy CPU cores.
JOB_TIMEOUT_MS = 300_000


def need_chromium() -> None:
    """Skips a browser test where Debian's chromium is missing, except under CI, where it fails."""
    if not CHROMIUM.is_file():
        missing = f"{CHROMIUM} (Debian's chromium) is missing; `make test` installs it where it runs as root with apt"
        if os.environ.get("CI") == "true":
            pytest.fail(f"{missing}: under CI the browser test must run")
        pytest.skip(f"{missing}: the browser test is skipped on this machine")


def test_the_page_upscales_a_clip_in_a_real_browser(tmp_path, tiny_weights_home):
    from playwright.sync_api import expect, sync_playwright

    need_chromium()
    clip = make_clip_with_audio(tmp_path / "street.mp4")
    screenshot = REPO / Path(os.environ.get(SCREENSHOT_ENV) or tmp_path / "web.png")
    hold = tmp_path / "hold"
    hold.touch()
    port = free_port()
    env = {**os.environ, "VSREALBASICVSR_HOME": str(tiny_weights_home), web_runner.HOLD_ENV: f"1:{hold}"}
    server = start_server(["--jobs", str(tmp_path / "jobs"), "--port", str(port)], env)
    try:
        with sync_playwright() as playwright:
            browser = playwright.chromium.launch(executable_path=str(CHROMIUM), args=["--no-sandbox"])
            page = browser.new_page(viewport={"width": 1200, "height": 900}, accept_downloads=True)
            page.goto(f"http://127.0.0.1:{port}/")
            page.set_input_files("#file", str(clip))
            expect(page.locator("#upload-text")).to_have_text("uploaded street.mp4", timeout=60_000)
            expect(page.locator("#job-info")).to_contain_text("64x48, 6 frames at 25.000 fps")
            expect(page.locator("#plan")).to_be_visible(timeout=60_000)  # planned with the defaults at once

            page.fill("input[name=max_seq_len]", "2")
            page.fill("input[name=device]", "cpu")
            page.select_option("select[name=tile_mode]", "off")
            expect(page.locator("#start-button")).to_be_disabled()  # the plan shown is not for these options
            page.click("#plan-button")
            expect(page.locator("#plan")).to_contain_text("3 of 2 frames", timeout=60_000)
            expect(page.locator("#plan")).to_contain_text("256x192, 6 frames, libx264")
            page.click("#start-button")

            expect(page.locator("#preview")).to_be_visible(timeout=JOB_TIMEOUT_MS)  # the first segment is done
            expect(page.locator("#progress-text")).to_contain_text("2 of 6 frames (33 %)")  # a window of 2 is kept
            expect(page.locator("#jobs")).to_contain_text("running")
            page.wait_for_function("document.querySelector('#preview-img').naturalWidth > 0")
            page.screenshot(path=str(screenshot), full_page=True)
            hold.unlink()

            expect(page.locator("#result")).to_be_visible(timeout=JOB_TIMEOUT_MS)
            assert page.eval_on_selector("#job-bar", "bar => bar.value") == 100
            expect(page.locator("#jobs")).to_contain_text("done")
            # the page plays the result: the browser reads its length (through range requests)
            page.wait_for_function("document.querySelector('#video').readyState >= 1", timeout=30_000)
            assert abs(page.eval_on_selector("#video", "video => video.duration") - 6 / 25) < 0.05
            with page.expect_download() as download:
                page.click("#download")
            assert download.value.suggested_filename == "street_x4.mp4"
            result = tmp_path / "downloaded.mp4"
            download.value.save_as(result)
            browser.close()
    finally:
        server.send_signal(signal.SIGINT)
        assert server.wait(timeout=30) == 0  # Ctrl-C ends it quietly
    with av.open(str(result)) as container:
        video = container.streams.video[0]
        assert (video.width, video.height) == (256, 192) and len(container.streams.audio) == 1
        assert sum(1 for _ in container.decode(video=0)) == 6
    assert screenshot.stat().st_size > 0
