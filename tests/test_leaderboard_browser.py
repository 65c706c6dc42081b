"""The built HTML pages in headless Chromium: they render without console errors, the index
links every table, and clicking the mAP header orders the rows by mAP (both ways)."""

from __future__ import annotations

import shutil
import tempfile
from pathlib import Path

import pytest

from harness.leaderboard import build_outputs, submit, write_outputs
from harness.registry import Registry
from runs import make_run
from test_leaderboard_submit import TOY_PLUGIN, voc_data

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
CHROMEDRIVER = shutil.which("chromedriver") or ("/usr/bin/chromedriver" if Path("/usr/bin/chromedriver").exists() else None)
pytestmark = pytest.mark.skipif(
    CHROMIUM is None or CHROMEDRIVER is None,
    reason="no headless browser here: install Debian's chromium and chromium-driver (.ci/run does, as root)",
)
FLAGS = ("--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update",
         "--disable-sync", "--no-first-run")


@pytest.fixture(scope="module")
def pages(tmp_path_factory) -> Path:
    """A leaderboard with the paper's VOC rows, reproduced rows of several mAPs, a row with
    deviations and a fusion, built to HTML."""
    base = tmp_path_factory.mktemp("browser")
    plugin = base / "toy_plugin.py"
    plugin.write_text(TOY_PLUGIN)
    registry = Registry((str(plugin),))
    root = base / "lb"
    data = voc_data()
    for seed, size in ((0, 448), (1, 448), (0, 384), (0, 512)):
        submit(make_run(base / f"voc{size}", dataset="voc2007", data=data, size=size, seed=seed, run_files=True,
                        score_seed=seed + size), root, Registry())
    submit(make_run(base / "short", dataset="voc2007", data=data, run_files=True, epochs=3, seed=2), root, Registry())
    members = [make_run(base / "members", aug=aug, size=512, score_seed=i, run_files=True)
               for i, aug in enumerate(("crop", "mixup"))]
    for run in members:
        submit(run, root, registry)
    from harness.fusion import fuse_runs

    submit(fuse_runs(members, base / "fused", Registry().get("fusion", "mean"), "DistrEn").path, root, registry)
    write_outputs(root, build_outputs(root, ("html",)), ("html",))
    return root / "tables"


@pytest.fixture(scope="module")
def browser():
    webdriver = pytest.importorskip("selenium.webdriver", reason="selenium is in the test extra: pip install -e '.[test]'")
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    for flag in FLAGS:
        options.add_argument(flag)
    profile = tempfile.mkdtemp(prefix="chromium-profile-")
    options.add_argument(f"--user-data-dir={profile}")
    options.binary_location = CHROMIUM
    options.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    driver = webdriver.Chrome(service=Service(CHROMEDRIVER), options=options)
    yield driver
    driver.quit()
    shutil.rmtree(profile, ignore_errors=True)


def console_errors(driver) -> list[str]:
    return [entry["message"] for entry in driver.get_log("browser") if entry["level"] in ("SEVERE", "ERROR")]


def mean_map(text: str) -> float | None:
    return None if text in ("", "-") else float(text.split(" ")[0].replace("+", ""))


def test_pages_render_without_console_errors_and_sort_by_map(pages, browser):
    from selenium.webdriver.common.by import By

    browser.get((pages / "index.html").as_uri())
    links = {a.get_attribute("href").rsplit("/", 1)[1] for a in browser.find_elements(By.CSS_SELECTOR, "td a")}
    assert {p.name for p in pages.glob("*-*.html")} <= links and "voc2007-wang2019.html" in links
    assert console_errors(browser) == []

    for name in ("toy-wang2019.html", "coco2014-wang2019.html", "voc2007-wang2019.html"):
        browser.get((pages / name).as_uri())
        assert console_errors(browser) == [], name
    assert browser.find_element(By.TAG_NAME, "svg").size["height"] > 100  # the per-class AP chart
    badges = [b.text for b in browser.find_elements(By.CSS_SELECTOR, ".badge")]
    assert "self-reported" in badges and "deviation" in badges

    table = browser.find_element(By.CSS_SELECTOR, 'table[data-section="protocol"]')
    headers = [th.text for th in table.find_elements(By.CSS_SELECTOR, "thead th")]
    column = headers.index("mAP")

    def first_rows_map() -> list[float | None]:
        bodies = table.find_elements(By.TAG_NAME, "tbody")
        return [mean_map(b.find_elements(By.TAG_NAME, "tr")[0].find_elements(By.TAG_NAME, "td")[column].text) for b in bodies]

    before = first_rows_map()
    table.find_elements(By.CSS_SELECTOR, "thead th")[column].click()
    descending = first_rows_map()
    values = [v for v in descending if v is not None]
    assert sorted(before, key=lambda v: (v is None, -(v or 0))) == descending
    assert values == sorted(values, reverse=True) and values != [v for v in before if v is not None]
    table.find_elements(By.CSS_SELECTOR, "thead th")[column].click()
    ascending = [v for v in first_rows_map() if v is not None]
    assert ascending == sorted(values)
    assert console_errors(browser) == []
