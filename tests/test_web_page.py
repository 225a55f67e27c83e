"""The page of `vsrealbasicvsr serve` in Debian's chromium (Playwright), for what only a browser
shows (issue 25): the model it starts with, errors beside the control that caused them, a failed
job's row inside the jobs panel, rows reached with Tab and kept while the list updates, a phone's
width with nothing to scroll sideways, and the server going away and coming back.

The server's weights folder holds only "basicvsr-reds4", as a file that is not a checkpoint: a
job of it fails at once with a long message, and the registry's default model (realbasicvsr)
is not installed and cannot be fetched (its mirror is a port where nothing listens).
"""

import os
import signal
import time
from pathlib import Path

import pytest
from conftest import WEB_OPTIONS
from helpers import free_port
from test_web_browser import CHROMIUM, need_chromium
from test_web_restart import call, call_json, start_server

from vsrealbasicvsr.weights import registry

BROWSER_ARGS = ["--no-sandbox", "--disable-background-networking", "--disable-dev-shm-usage", "--disable-gpu"]
DESKTOP, PHONE = {"width": 1280, "height": 800}, {"width": 390, "height": 844}


@pytest.fixture(scope="module")
def site(tmp_path_factory, clip_with_audio):
    """(base URL, the server's arguments and environment, the server, a failed job's id)."""
    folder = tmp_path_factory.mktemp("page")
    home, inputs = folder / "home", folder / "inputs"
    home.mkdir()
    inputs.mkdir()
    (home / registry.MODELS["basicvsr-reds4"].filename).write_bytes(b"not a checkpoint")
    (inputs / "notes.txt").write_text("these are words, not frames")
    port = free_port()
    arguments = ["--jobs", str(folder / "jobs"), "--port", str(port), "--input-dir", str(inputs)]
    env = {
        **os.environ,
        "VSREALBASICVSR_HOME": str(home),
        "VSREALBASICVSR_MIRROR": f"http://127.0.0.1:{free_port()}/weights",
    }
    server = start_server(arguments, env)
    base = f"http://127.0.0.1:{port}"
    status, body = call(base, "POST", "/api/uploads", clip_with_audio.read_bytes(), {"X-File-Name": "clip.mp4"})
    assert status == 201, body
    failed = call_json(base, "GET", "/api/jobs")["jobs"][0]["id"]
    call_json(base, "POST", f"/api/jobs/{failed}/plan", {**WEB_OPTIONS, "model": "basicvsr-reds4"})
    call_json(base, "POST", f"/api/jobs/{failed}/start")
    site = {"base": base, "arguments": arguments, "env": env, "server": server, "failed": failed}
    yield site
    site["server"].send_signal(signal.SIGINT)
    site["server"].wait(timeout=30)


@pytest.fixture(scope="module")
def browser():
    from playwright.sync_api import sync_playwright

    need_chromium()
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=str(CHROMIUM), args=BROWSER_ARGS)
        yield browser
        browser.close()


def open_page(browser, site, viewport=DESKTOP, path="/"):
    page = browser.new_page(viewport=viewport)
    page.on("dialog", lambda dialog: dialog.accept())
    page.goto(site["base"] + path)
    page.wait_for_selector(f'#jobs li[data-id="{site["failed"]}"]')
    return page


def failed(page, site):
    from playwright.sync_api import expect

    expect(page.locator(f'#jobs li[data-id="{site["failed"]}"] .about')).to_contain_text("failed", timeout=120_000)


def test_the_page_starts_with_an_installed_model_and_says_when_one_is_missing(browser, site):
    from playwright.sync_api import expect

    page = open_page(browser, site)
    page.click(f'#jobs li[data-id="{site["failed"]}"] button.open')
    model = page.locator("select[name=model]")
    expect(model).to_have_value("basicvsr-reds4")
    assert "realbasicvsr (not installed)" in model.inner_text()
    # A model whose weights cannot come: the plan is made again at once, and the message stands
    # beside the model, with Start off.
    failed(page, site)
    model.select_option("realbasicvsr")
    beside = page.locator('.field-error[data-for="model"]')
    expect(beside).to_contain_text("are not installed, and cannot be fetched (127.0.0.1", timeout=60_000)
    expect(beside).to_contain_text("choose an installed model (basicvsr-reds4)")
    expect(page.locator("#plan")).to_contain_text(
        "realbasicvsr (RealBasicVSR x4): weights not installed, and cannot be fetched"
    )
    expect(page.locator("#start-button")).to_be_disabled()
    # The job planned with the registry's default model shows it when opened again.
    again = open_page(browser, site, path=f"/#{site['failed']}")
    expect(again.locator("select[name=model]")).to_have_value("realbasicvsr")
    again.close()
    model.select_option("basicvsr-reds4")
    expect(beside).to_be_hidden(timeout=60_000)
    page.close()


def test_errors_stand_beside_their_control_and_go_when_it_is_fixed(browser, site):
    from playwright.sync_api import expect

    page = open_page(browser, site)
    page.click(f'#jobs li[data-id="{site["failed"]}"] button.open')
    failed(page, site)
    page.fill("input[name=device]", "banana")
    page.click("#plan-button")
    device_error = page.locator('.field-error[data-for="device"]')
    expect(device_error).to_contain_text("banana", timeout=60_000)
    assert page.locator('.field-error[data-for="model"]').is_hidden()
    page.fill("input[name=device]", "cpu")
    page.locator("input[name=device]").dispatch_event("change")
    expect(device_error).to_be_hidden()

    # A file of the server's folder that is not a video: the message beside that list, and not
    # in the job that is open.
    page.select_option("#inputs", "notes.txt")
    page.click("#pick-button")
    expect(page.locator("#pick-error")).to_contain_text("notes.txt is not a video", timeout=60_000)
    assert "notes.txt" not in page.inner_text("#job")
    page.close()


def test_the_form_has_every_option_labelled_with_its_meaning(browser, site):
    from playwright.sync_api import expect

    form = call_json(site["base"], "GET", "/api/config")
    page = open_page(browser, site, path=f"/#{site['failed']}")
    failed(page, site)
    more = page.locator("#more-options")
    expect(more).not_to_have_attribute("open", "")
    for name, about in [*form["options"].items(), *form["output"].items()]:
        control = page.get_by_label(name, exact=True)  # the option's name labels its control
        expect(control).to_have_count(1)
        described = control.get_attribute("aria-describedby")
        assert page.locator(f"#{described}").text_content() == about["help"]
        assert more.locator(control).count() == (0 if about["main"] else 1)
    # The options after the first ones open with the keyboard; a field in focus says what it does.
    page.focus("#more-options summary")
    page.keyboard.press("Enter")
    expect(more).to_have_attribute("open", "")
    page.focus("input[name=overlap]")
    expect(page.locator("#option-help")).to_have_text(form["options"]["overlap"]["help"])
    # An error about one of them opens them again, the message beside it.
    page.fill("input[name=overlap]", "-1")
    page.locator("input[name=overlap]").dispatch_event("change")
    page.click("#more-options summary")
    beside = page.locator('.field-error[data-for="overlap"]')
    expect(beside).to_contain_text("overlap must be >= 0", timeout=60_000)
    expect(more).to_have_attribute("open", "")
    expect(beside).to_be_visible()
    # A message that names two options ("compile=True needs a CUDA device") stands beside the
    # first it names.
    page.fill("input[name=overlap]", "8")
    page.keyboard.press("Tab")  # a change: its message goes and the fields move; then a plan
    expect(page.locator("#plan")).to_be_visible(timeout=60_000)  # planned: nothing moves under the click
    page.check("input[name=compile]")  # on the job's device, the CPU
    beside = page.locator('.field-error[data-for="compile"]')
    expect(beside).to_contain_text("compile=True needs a CUDA device", timeout=60_000)
    assert page.locator('.field-error[data-for="device"]').is_hidden()
    page.close()


def test_a_failed_job_shows_failed_in_its_row_and_why_in_its_panel(browser, site):
    from playwright.sync_api import expect

    page = open_page(browser, site)
    failed(page, site)
    row = page.locator(f'#jobs li[data-id="{site["failed"]}"]')
    assert row.locator(".about").inner_text().endswith("failed · 0 %")
    panel, box = page.locator("#jobs-panel").bounding_box(), row.bounding_box()
    assert box["x"] + box["width"] <= panel["x"] + panel["width"] and box["height"] < 80
    row.locator("button.open").click()
    expect(page.locator("#job-error")).to_contain_text("This job failed: ")
    assert len(page.inner_text("#job-error")) > 60  # the whole message, which the row does not hold
    page.close()


def test_rows_are_reached_with_tab_and_keep_focus_while_the_list_updates(browser, site):
    page = open_page(browser, site)
    failed(page, site)
    for _ in range(30):
        page.keyboard.press("Tab")
        if page.evaluate("document.activeElement.matches('#jobs button.open')"):
            break
    else:
        raise AssertionError("Tab never reached a job's row")
    page.keyboard.press("Enter")
    page.wait_for_function(f"location.hash === '#{site['failed']}' && !document.querySelector('#job').hidden")
    page.keyboard.press("Tab")  # its Delete button, named for its job
    label = page.evaluate("document.activeElement.getAttribute('aria-label')")
    assert label.startswith("Delete the job of clip.mp4 (added ")
    page.wait_for_timeout(4500)  # two refreshes of the list
    assert page.evaluate("document.activeElement.getAttribute('aria-label')") == label
    for name in ("tile_w", "tile_h"):
        assert page.get_attribute(f"input[name={name}]", "aria-label")
    assert page.get_attribute("#inputs", "aria-label") and page.get_attribute("#job-bar", "aria-label")
    assert page.get_attribute("#progress-text", "aria-live") == "polite"
    page.close()


def test_a_phone_shows_the_page_without_sideways_scrolling(browser, site, tmp_path):
    from playwright.sync_api import expect

    page = open_page(browser, site, PHONE, f"/#{site['failed']}")
    failed(page, site)
    expect(page.locator("#plan")).to_be_visible(timeout=60_000)
    assert page.evaluate("document.documentElement.scrollWidth") <= PHONE["width"]
    for selector in ("header", "#jobs-panel", "#job", "#plan"):
        box = page.locator(selector).bounding_box()
        assert box["x"] >= 0 and box["x"] + box["width"] <= PHONE["width"], selector
    # the jobs come before the long form of the open job
    assert page.locator("#jobs-panel").bounding_box()["y"] < page.locator("#options").bounding_box()["y"]
    screenshot = Path(os.environ.get("VSREALBASICVSR_WEB_PHONE") or tmp_path / "phone.png")
    page.screenshot(path=str(screenshot), full_page=True)
    page.close()


def test_the_page_says_when_the_server_is_gone_and_when_it_is_back(browser, site):
    from playwright.sync_api import expect

    page = open_page(browser, site)
    banner = page.locator("#connection")
    assert banner.is_hidden()
    site["server"].send_signal(signal.SIGINT)
    assert site["server"].wait(timeout=30) == 0
    expect(banner).to_have_text("Connection to the server lost; retrying...", timeout=10_000)
    site["server"] = start_server(site["arguments"], site["env"])
    expect(banner).to_be_hidden(timeout=10_000)
    page.close()


def test_a_video_chosen_while_the_page_starts_is_uploaded(browser, site, clip_with_audio):
    """A video chosen before the server's settings (/api/config) have come is uploaded once they
    come, not dropped: here they are held back until the video is chosen."""
    from playwright.sync_api import expect

    page = browser.new_page(viewport=DESKTOP)
    held = []
    page.route("**/api/config", lambda route: held.append(route))
    page.goto(site["base"] + "/")
    deadline = time.monotonic() + 30
    while not held and time.monotonic() < deadline:
        page.wait_for_timeout(20)
    assert held, "the page did not ask for /api/config"
    page.set_input_files("#file", str(clip_with_audio))
    held[0].continue_()
    expect(page.locator("#upload-text")).to_have_text(f"uploaded {clip_with_audio.name}", timeout=60_000)
    page.close()
