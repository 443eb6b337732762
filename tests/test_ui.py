"""The web page (omniad_core.ui) in a real browser: headless Debian Chromium driven by
Selenium against `python -m omniad_core.ui` (what `omniad ui` runs) with the embedded demo
model on 127.0.0.1.

Skipped only when Chromium or its driver is not installed (`.ci/run` installs both:
``apt-get install -y chromium chromium-driver``).  Set ``OMNIAD_UPDATE_SCREENSHOT=1`` to
write the page's screenshot to ``docs/img/ui.png`` (the README shows it).
"""

from __future__ import annotations

import io
import os
import shutil
import socket
import subprocess
import sys
import time
import urllib.parse
import urllib.request
from pathlib import Path

import numpy as np
import pytest
from conftest import write_test_image
from PIL import Image

pytestmark = pytest.mark.filterwarnings("ignore::DeprecationWarning")

REPO = Path(__file__).resolve().parent.parent
CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
CHROMEDRIVER = shutil.which("chromedriver")
#: Pixel limit the page is started with (the oversized upload goes over it).
MAX_PIXELS = 60_000
#: Byte limit of uploads, in MB.
MAX_UPLOAD_MB = 0.5
SERVER_STARTUP = 150.0
WAIT = 60.0

needs_browser = pytest.mark.skipif(
    CHROMIUM is None or CHROMEDRIVER is None,
    reason="Chromium and chromedriver are not installed (Debian: apt-get install -y "
    "chromium chromium-driver; .ci/run installs them)",
)


# ------------------------------------------------------------- without a browser
def test_import_omniad_core_does_not_import_gradio():
    code = (
        "import sys, omniad_core, omniad_core.folder, omniad_core.ui\n"
        "assert 'gradio' not in sys.modules, 'gradio imported'\n"
        "assert 'torch' not in sys.modules, 'torch imported'\n"
    )
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr


def test_ui_without_gradio_says_what_to_install():
    code = (
        "import sys; sys.modules['gradio'] = None\n"  # as if the ui extra were missing
        "from omniad_core.ui import ui_main\n"
        "sys.exit(ui_main([]))\n"
    )
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert r.returncode == 1
    assert r.stderr.strip() == (
        "omniad ui: error: the web page needs gradio: pip install 'omniad[ui]'"
    )


def test_ui_help_names_the_command_and_loads_nothing_heavy():
    code = (
        "import sys\n"
        "from omniad_core.ui import ui_main, ui_parser\n"
        "try:\n    ui_main(['--help'])\nexcept SystemExit as e:\n    assert e.code == 0\n"
        "undocumented = [a.option_strings for a in ui_parser()._actions if not a.help]\n"
        "assert not undocumented, undocumented\n"
        "print(sorted(m for m in ('torch', 'transformers', 'gradio') if m in sys.modules))\n"
    )
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr
    assert r.stdout.startswith("usage: omniad ui") and r.stdout.strip().endswith("[]")
    assert "default 127.0.0.1" in r.stdout


def test_ui_bad_arguments_are_one_line_before_any_work():
    for argv, msg in (
        (["--port", "0"], "--port must be 1..65535"),
        (["--max-pixels", "-5"], "--max-pixels must be positive"),
    ):
        r = subprocess.run(
            [
                sys.executable,
                "-c",
                f"import sys; from omniad_core.ui import ui_main; sys.exit(ui_main({argv!r}))",
            ],
            capture_output=True,
            text=True,
            timeout=120,
        )
        assert r.returncode == 1 and r.stderr.strip() == f"omniad ui: error: {msg}, got {argv[1]}"


def test_cells_picture_marks_the_cells():
    from omniad_core.ui import cells_picture

    cells = np.zeros((8, 8), bool)
    cells[2, 5] = cells[7, 0] = True
    pic = np.asarray(cells_picture(cells, cell_px=10))
    assert pic.shape == (81, 81, 3)
    assert np.array_equal(_cells_of(pic, 8, 8, 10), cells)


def _cells_of(pic: np.ndarray, rows: int, cols: int, cell_px: int) -> np.ndarray:
    """Which cells of a grid picture are red (read at each cell's centre)."""
    c = cell_px // 2
    centres = pic[c : rows * cell_px : cell_px, c : cols * cell_px : cell_px]
    return (centres[..., 0] > 200) & (centres[..., 1] < 100)


# ----------------------------------------------------------------- the server
def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class _Server:
    def __init__(self, tmp: Path) -> None:
        self.port = _free_port()
        self.url = f"http://127.0.0.1:{self.port}/"
        self.tmp = tmp / "server-tmp"  # the server's TMPDIR: its temporary folder lives here
        self.tmp.mkdir()
        self.log = tmp / "ui.log"
        env = {**os.environ, "OMP_NUM_THREADS": "1", "TMPDIR": str(self.tmp)}
        env.pop("GRADIO_TEMP_DIR", None)
        env.pop("OMNIAD_MAX_IMAGE_PIXELS", None)
        cmd = [
            sys.executable,
            "-m",
            "omniad_core.ui",
            "--port",
            str(self.port),
            "--max-pixels",
            str(MAX_PIXELS),
            "--max-upload-mb",
            str(MAX_UPLOAD_MB),
        ]
        self._out = open(self.log, "wb")  # noqa: SIM115 - closed in stop()
        self.proc = subprocess.Popen(cmd, stdout=self._out, stderr=subprocess.STDOUT, env=env)
        deadline = time.monotonic() + SERVER_STARTUP
        while not self.answers():
            if self.proc.poll() is not None:
                self.stop()
                pytest.fail(f"omniad ui exited with {self.proc.returncode}: {self.tail()}")
            if time.monotonic() > deadline:
                self.stop()
                pytest.fail(
                    f"omniad ui did not answer within {SERVER_STARTUP:.0f} s: {self.tail()}"
                )
            time.sleep(0.5)

    def answers(self) -> bool:
        try:
            with urllib.request.urlopen(self.url, timeout=5) as r:
                return r.status == 200
        except OSError:
            return False

    def tail(self, n: int = 3000) -> str:
        return self.log.read_bytes()[-n:].decode("utf-8", "replace")

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(timeout=10)
        self._out.close()


@pytest.fixture(scope="module")
def ui_server(tmp_path_factory):
    """`python -m omniad_core.ui` (= `omniad ui`) with the embedded demo model on a free
    port of 127.0.0.1, byte and pixel limits lowered so that the tests can exceed them."""
    pytest.importorskip("torch")
    try:
        import gradio  # noqa: F401
    except ImportError:
        pytest.fail("the page needs gradio: pip install -e '.[ui]' (the dev extra has it)")
    server = _Server(tmp_path_factory.mktemp("ui"))
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture(scope="module")
def browser(tmp_path_factory):
    """Headless Debian Chromium through chromedriver (Selenium), a fresh profile."""
    try:
        from selenium import webdriver
        from selenium.webdriver.chrome.service import Service
    except ImportError:
        pytest.fail("the browser tests need selenium: pip install -e '.[dev]'")
    opts = webdriver.ChromeOptions()
    opts.binary_location = CHROMIUM
    for flag in (
        "--headless",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        "--no-first-run",
        "--disable-quic",
        "--window-size=1280,1100",
    ):
        opts.add_argument(flag)
    opts.add_argument(f"--user-data-dir={tmp_path_factory.mktemp('chromium-profile')}")
    driver = webdriver.Chrome(service=Service(CHROMEDRIVER), options=opts)
    driver.set_page_load_timeout(WAIT)
    try:
        yield driver
    finally:
        driver.quit()


# ------------------------------------------------------------------- helpers
def _by():
    from selenium.webdriver.common.by import By

    return By


def _wait(driver, predicate, what: str, timeout: float = WAIT):
    from selenium.webdriver.support.ui import WebDriverWait

    try:
        return WebDriverWait(driver, timeout, poll_frequency=0.2).until(lambda d: predicate(d))
    except Exception:
        pytest.fail(
            f"timed out waiting for {what}; page text: {driver.find_element(_by().TAG_NAME, 'body').text[:1500]}"
        )


def _open(driver, server) -> None:
    driver.get(server.url)
    _wait(driver, lambda d: d.find_elements(_by().ID, "run"), "the page")


def _value(driver, elem_id: str) -> str:
    el = driver.find_element(_by().CSS_SELECTOR, f"#{elem_id} textarea, #{elem_id} input")
    return el.get_attribute("value")


def _status(driver, elem_id: str = "status") -> str:
    return " ".join(driver.find_element(_by().ID, elem_id).text.split())


def _clear(driver, elem_id: str) -> None:
    for b in driver.find_elements(_by().CSS_SELECTOR, f"#{elem_id} button[aria-label='Clear']"):
        driver.execute_script("arguments[0].click()", b)  # the drop zone may lie on top
    _wait(
        driver,
        lambda d: d.find_elements(_by().CSS_SELECTOR, f"#{elem_id} input[type=file]"),
        f"an empty {elem_id}",
    )


def _upload(driver, elem_id: str, *paths: Path, listed: bool = True) -> None:
    _clear(driver, elem_id)
    box = driver.find_element(_by().CSS_SELECTOR, f"#{elem_id} input[type=file]")
    box.send_keys("\n".join(str(p) for p in paths))
    # press nothing until the component lists the new files (it shows the stem and the
    # suffix apart): under load, a click that
    # comes first runs the previous upload again
    if not listed:  # an upload the page refuses is never listed
        return
    _wait(
        driver,
        lambda d: all(
            p.stem in d.find_element(_by().CSS_SELECTOR, f"#{elem_id}").text for p in paths
        ),
        f"the upload of {', '.join(p.name for p in paths)}",
    )


def _inspect(driver, image: Path, marker: str) -> str:
    """Upload ``image``, press Inspect, wait until the status names ``marker``."""
    _upload(driver, "image-file", image)
    before = _status(driver)
    driver.find_element(_by().ID, "run").click()
    return _wait(
        driver,
        lambda d: (s := _status(d)) != before and marker in s and s,
        f"the result of {image.name}",
    )


def _shown_png(driver, server, elem_id: str) -> tuple[np.ndarray, str]:
    """The picture an image component shows, fetched from its URL, and its server path."""
    img = driver.find_element(_by().CSS_SELECTOR, f"#{elem_id} img")
    src = img.get_attribute("src")
    assert src.startswith(server.url), src
    with urllib.request.urlopen(src, timeout=30) as r:
        data = r.read()
    path = urllib.parse.unquote(src.split("file=", 1)[1]) if "file=" in src else ""
    return np.asarray(Image.open(io.BytesIO(data)).convert("RGB")), path


def _defect_image(tmp_path: Path) -> Path:
    """A synthetic leather texture with a stain, 224 px: the demo model's own kind of image."""
    from omniad_train.synthetic import render_sample

    sample = render_sample("leather", "stain", seed=0, size=224)
    path = tmp_path / "leather_stain.png"
    Image.fromarray(sample.image).save(path)
    return path


# -------------------------------------------------------------- the page tests
@needs_browser
def test_page_shows_what_analyze_returns(ui_server, browser, demo_inspector, tmp_path):
    _open(browser, ui_server)
    info = " ".join(browser.find_element(_by().ID, "model-info").text.split())
    assert "embedded demo model" in info and "grid 8x8" in info
    assert "Demo model" in info and "synthetic textures only" in info
    assert "fabric, leather, tile, wood" in info and "not a model for real inspection" in info

    image = _defect_image(tmp_path)
    status = _inspect(browser, image, image.name)
    want = demo_inspector.analyze(image)
    assert "Error" not in status, status
    assert "grid 8x8" in status and "embedded demo model" in status
    assert _value(browser, "answer") == f"{want.answer}: Yes"
    assert _value(browser, "seg") == want.parsed.seg_canonical
    assert _value(browser, "reasoning") == want.think.strip()
    overlay, where = _shown_png(browser, ui_server, "overlay")
    assert np.array_equal(overlay, np.asarray(want.overlay()))  # pixel for pixel
    cells, _ = _shown_png(browser, ui_server, "cells")
    assert np.array_equal(_cells_of(cells, 8, 8, 16), want.parsed.cells)
    # what the server wrote is inside its own temporary folder, and nothing else is there
    work = [p for p in ui_server.tmp.iterdir()]
    assert len(work) == 1 and work[0].name.startswith("omniad-ui-"), work
    assert Path(where).resolve().is_relative_to(work[0].resolve()), where

    browser.execute_script("window.scrollTo(0, 0)")
    shot = tmp_path / "ui.png"
    browser.save_screenshot(str(shot))
    with Image.open(shot) as im:
        assert im.size[0] >= 1000
    if os.environ.get("OMNIAD_UPDATE_SCREENSHOT", "").strip() not in ("", "0"):
        (REPO / "docs" / "img").mkdir(parents=True, exist_ok=True)
        shutil.copyfile(shot, REPO / "docs" / "img" / "ui.png")


@needs_browser
def test_page_asks_your_own_question_with_a_reference(ui_server, browser, demo_inspector, tmp_path):
    _open(browser, ui_server)
    image = write_test_image(tmp_path / "part.png", 3, size=(96, 128))
    ref = write_test_image(tmp_path / "normal.png", 4, size=(96, 128), kind="smooth")
    By = _by()
    browser.find_element(By.CSS_SELECTOR, "#own button, #own .label-wrap").click()
    q = _wait(
        browser,
        lambda d: [
            e
            for e in d.find_elements(By.CSS_SELECTOR, "#question textarea, #question input")
            if e.is_displayed()
        ],
        "the question box",
    )[0]
    q.send_keys("Which defect does the part show?")
    browser.find_element(By.CSS_SELECTOR, "#options textarea").send_keys("scratch\nhole\nstain")
    _upload(browser, "reference-file", ref)
    _inspect(browser, image, image.name)
    want = demo_inspector.analyze(
        image, "Which defect does the part show?", ["scratch", "hole", "stain"], reference=ref
    )
    letters = {"A": "scratch", "B": "hole", "C": "stain"}
    shown = _value(browser, "answer")
    assert shown == (
        f"{want.answer}: {letters[want.answer]}"
        if want.answer in letters
        else want.answer or "(no answer could be read)"
    )
    assert _value(browser, "seg") == (want.parsed.seg_canonical or "(no anomalous cell)")
    assert "with a reference" in _status(browser)
    _clear(browser, "reference-file")


@needs_browser
def test_bad_uploads_show_an_error_and_the_server_keeps_serving(
    ui_server, browser, demo_inspector, tmp_path
):
    _open(browser, ui_server)
    text = tmp_path / "notes.png"
    text.write_text("this is not an image\n")
    status = _inspect(browser, text, "Error")
    assert "cannot read 'notes.png' as an image" in status, status
    assert str(tmp_path) not in status  # no server path on the page

    big = write_test_image(tmp_path / "big.png", 5, size=(300, 300))  # 90,000 px > 60,000
    status = _inspect(browser, big, "Error")
    assert "300x300 = 90,000 pixels, more than the limit of 60,000" in status, status

    # more bytes than --max-upload-mb: refused at upload, the page says so
    from PIL import PngImagePlugin

    info = PngImagePlugin.PngInfo()
    info.add_text("padding", "x" * int(MAX_UPLOAD_MB * 1024 * 1024 * 1.2))
    heavy = tmp_path / "heavy.png"
    Image.fromarray(np.zeros((20, 20, 3), np.uint8)).save(heavy, pnginfo=info)
    _upload(browser, "image-file", heavy, listed=False)
    _wait(
        browser,
        lambda d: "exceed the maximum allowed size" in d.find_element(_by().TAG_NAME, "body").text,
        "the upload size error",
    )

    # the server is still up and answers the next image
    assert ui_server.proc.poll() is None and ui_server.answers()
    good = write_test_image(tmp_path / "after.png", 6)
    status = _inspect(browser, good, good.name)
    assert (
        "Error" not in status
        and _value(browser, "seg") == demo_inspector.analyze(good).parsed.seg_canonical
    )


@needs_browser
def test_many_images_tab_shows_the_sorted_table(ui_server, browser, demo_inspector, tmp_path):
    from omniad_core.folder import inspect_folder

    _open(browser, ui_server)
    By = _by()
    next(
        t for t in browser.find_elements(By.CSS_SELECTOR, "button[role=tab]") if "Many" in t.text
    ).click()
    folder = tmp_path / "batch"
    paths = [
        write_test_image(folder / f"p{k}.png", 20 + k, kind="smooth" if k == 1 else "noise")
        for k in range(3)
    ]
    (folder / "broken.png").write_text("no")
    paths.append(folder / "broken.png")
    _wait(
        browser,
        lambda d: d.find_elements(By.CSS_SELECTOR, "#many-files input[type=file]"),
        "the upload box",
    )
    _upload(browser, "many-files", *paths)
    browser.find_element(By.ID, "run-many").click()
    status = _wait(
        browser, lambda d: "images with" in (s := _status(d, "many-status")) and s, "the table"
    )
    assert "4 images" in status and "1 unreadable" in status, status
    want = inspect_folder(demo_inspector, folder, tmp_path / "res", progress=False).rows()

    def cell(r: int, c: int) -> str:
        return browser.find_element(
            By.CSS_SELECTOR, f"#table [data-testid='cell-{r}-{c}']"
        ).text.strip()

    shown = [(cell(r, 1), cell(r, 2), cell(r, 6)) for r in range(4)]
    assert shown == [(w["image"], w["status"], w["seg"] or "") for w in want]
    assert "not an image" in cell(3, 7) or "cannot identify" in cell(3, 7)
    n_flagged = sum(1 for w in want if w["anomalous"])
    _wait(
        browser,
        lambda d: len(d.find_elements(By.CSS_SELECTOR, "#gallery img")) == n_flagged,
        "the overlays",
    )


@needs_browser
def test_server_stops_and_removes_its_temporary_folder(ui_server):
    assert any(ui_server.tmp.iterdir())
    ui_server.stop()  # SIGTERM, as a service manager would
    assert ui_server.proc.returncode == 0, ui_server.tail()
    assert list(ui_server.tmp.iterdir()) == []
