"""What a user sees: JupyterLab in headless Chromium runs the frame-by-frame notebook; a report draws its plots.

Needs Debian's chromium (installed here with apt-get when missing and possible) and Python playwright.
Screenshots go to $WB_ARTIFACTS (default: test-artifacts/ in the repository).
"""

import json
import os
import shutil
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
CHROMIUM = Path("/usr/bin/chromium")
ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
        "--disable-background-networking", "--disable-component-update", "--disable-sync"]
ARTIFACTS = Path(os.environ.get("WB_ARTIFACTS", ROOT / "test-artifacts"))

pytestmark = pytest.mark.xdist_group("browser")


def _ensure_chromium() -> None:
    if CHROMIUM.exists():
        return
    if shutil.which("apt-get") is None or os.geteuid() != 0:
        pytest.skip("Debian chromium is missing and cannot be installed here (needs apt-get as root): "
                    "sudo apt-get install chromium")
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    wait = ["-o", "DPkg::Lock::Timeout=600"]  # another apt (an image's own updater) may hold the lock for a while
    for cmd in (["apt-get", *wait, "update", "-q"], ["apt-get", *wait, "install", "-y", "-q", "chromium"]):
        deadline = time.monotonic() + 600  # apt-get update's lists lock ignores the timeout on older apt: retry
        while True:
            r = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=900)
            if r.returncode == 0 or "Could not get lock" not in r.stderr or time.monotonic() > deadline:
                break
            time.sleep(10)
        if r.returncode != 0:
            pytest.skip(f"could not install chromium ({' '.join(cmd)}): {r.stderr[-500:]}")


@pytest.fixture(scope="module")
def browser():
    _ensure_chromium()
    sync_api = pytest.importorskip("playwright.sync_api")
    with sync_api.sync_playwright() as p:
        b = p.chromium.launch(executable_path=str(CHROMIUM), args=ARGS)
        yield b
        b.close()


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def lab(tmp_path_factory):
    """JupyterLab on 127.0.0.1 serving a copy of the notebooks (their ../runs outputs stay in the temp folder)."""
    root = tmp_path_factory.mktemp("lab")
    shutil.copytree(ROOT / "notebooks", root / "notebooks")
    settings = root / "settings" / "@jupyterlab" / "apputils-extension"
    settings.mkdir(parents=True)
    (settings / "notification.jupyterlab-settings").write_text(json.dumps({"fetchNews": "false",
                                                                            "checkForUpdates": False}))
    port, token = _free_port(), "wbtest"
    env = {**os.environ, "JUPYTERLAB_SETTINGS_DIR": str(root / "settings"),
           "JUPYTERLAB_WORKSPACES_DIR": str(root / "workspaces")}
    proc = subprocess.Popen(
        [sys.executable, "-m", "jupyterlab", "--no-browser", "--ip=127.0.0.1", f"--port={port}",
         f"--ServerApp.token={token}", f"--ServerApp.root_dir={root / 'notebooks'}",
         "--ServerApp.open_browser=False", "--LabApp.news_url=None"]
        + (["--allow-root"] if os.geteuid() == 0 else []),
        env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}"
    for _ in range(120):
        try:
            urllib.request.urlopen(f"{url}/api/status?token={token}", timeout=2)
            break
        except OSError:
            if proc.poll() is not None:
                pytest.fail(f"JupyterLab exited: {proc.stdout.read().decode()[-2000:]}")
            time.sleep(0.5)
    else:
        proc.kill()
        pytest.fail("JupyterLab did not start within 60 s")
    yield url, token
    proc.terminate()
    try:
        proc.wait(timeout=10)
    except subprocess.TimeoutExpired:
        proc.kill()


def test_frame_by_frame_notebook_in_jupyterlab(browser, lab):
    url, token = lab
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    page = browser.new_page(viewport={"width": 1400, "height": 1000})
    try:
        _run_frame_by_frame(page, url, token)
    finally:
        page.screenshot(path=str(ARTIFACTS / "jupyterlab_frame_by_frame.png"), full_page=True)
        page.close()


def _run_frame_by_frame(page, url, token):
    page.goto(f"{url}/lab/tree/03_frame_by_frame.ipynb?token={token}")
    page.wait_for_selector(".jp-Notebook", timeout=60_000)
    try:  # a fresh user profile may be asked which kernel to start: the notebook's own, python3
        page.locator(".jp-Dialog button", has_text="Select").click(timeout=10_000)
    except Exception:
        pass
    page.wait_for_selector(".jp-Notebook-ExecutionIndicator[data-status='idle']", timeout=90_000)
    page.get_by_text("Run", exact=True).first.click()
    page.get_by_text("Run All Cells", exact=True).first.click()
    # The player: a Play button, a slider and frame images.
    slider = page.locator(".widget-slider .noUi-handle").first
    slider.wait_for(state="attached", timeout=240_000)
    page.wait_for_selector(".widget-play", timeout=30_000)
    frame = page.locator(".widget-image").first
    frame.wait_for(timeout=30_000)
    before = frame.get_attribute("src")
    slider.focus()
    for _ in range(25):  # the notebook's Asterix episode shows the same screen for its first 11 frames
        page.keyboard.press("ArrowRight")
    page.wait_for_function("(before) => document.querySelector('.widget-image').src !== before", arg=before,
                           timeout=30_000)
    assert frame.get_attribute("src") != before
    # Run All finishes: the last cell (the video) has its output, and the plotly figures are drawn.
    page.wait_for_selector("img[alt='episode.gif']", timeout=240_000)
    assert page.locator(".js-plotly-plot .main-svg").count() >= 3
    assert page.locator(".jp-OutputArea-output[data-mime-type='application/vnd.jupyter.stderr']",
                        has_text="Traceback").count() == 0


def test_report_html_draws_its_plots_offline(browser, tmp_path):
    from workbench.report import report

    work = tmp_path / "nb"
    work.mkdir()
    shutil.copy(ROOT / "notebooks" / "00_tour.ipynb", work)
    html = report(work / "00_tour.ipynb", tmp_path / "tour.html", {"total_steps": 6_000, "eval_episodes": 3},
                  progress=False)
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    page = browser.new_page(viewport={"width": 1300, "height": 1000})
    page.route("http*://**", lambda route: route.abort())  # offline: everything must be inside the file
    page.goto(html.resolve().as_uri())
    page.wait_for_selector(".js-plotly-plot .main-svg", timeout=30_000)
    n_figures = page.locator(".js-plotly-plot").count()
    assert n_figures >= 3  # live curves (static twins), the episode player's stand-in, the compression plot
    page.screenshot(path=str(ARTIFACTS / "tour_report.png"), full_page=True)
    page.close()


def test_readme_figures_are_drawn_in_chromium_from_the_committed_tables(tmp_path):
    """scripts/figures.py draws the README's two pictures (the notebook's plotly figures) in a real browser: each is
    an image of the figure's size with the figure in it (net3's blue bars, the heatmap's reds), not a blank page."""
    _ensure_chromium()
    pytest.importorskip("playwright.sync_api")
    from PIL import Image

    r = subprocess.run([sys.executable, "scripts/figures.py", "--out", str(tmp_path)], cwd=ROOT,
                       capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr[-2000:]
    images = {name: Image.open(tmp_path / f"{name}.png").convert("RGB") for name in ("rusu_kl", "more_data_100ep")}
    assert images["rusu_kl"].size == (760, 520) and images["more_data_100ep"].size == (1100, 560)
    bar_colours = set(images["more_data_100ep"].getdata())
    assert (0x1F, 0x77, 0xB4) in bar_colours and (0xFF, 0x7F, 0x0E) in bar_colours  # net3 and tiny bars
    reds = [p for p in images["rusu_kl"].getdata() if p[0] > 100 and p[1] < 40 and p[2] < 40]
    assert len(reds) > 5000  # the cells far under the teacher (Atari Breakout, Seaquest) fill whole blocks
