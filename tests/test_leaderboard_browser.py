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

    browser.set_window_size(1280, 1000)
    for name in ("toy-wang2019.html", "coco2014-wang2019.html", "voc2007-wang2019.html"):
        browser.get((pages / name).as_uri())
        assert console_errors(browser) == [], name
        viewport = browser.execute_script("return document.documentElement.clientWidth")
        for board in browser.find_elements(By.CSS_SELECTOR, "table.board"):  # the main tables fit the screen
            assert board.rect["x"] + board.rect["width"] <= viewport, name
    SHOTS.mkdir(exist_ok=True)
    browser.get_screenshot_as_file(str(SHOTS / "voc2007.png"))
    assert browser.find_element(By.CSS_SELECTOR, "table.heat").size["height"] > 100  # the per-class AP heatmap
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


SHOTS = Path(tempfile.gettempdir()) / "leaderboard-screenshots"


def wide_table(n_classes: int = 80, n_rows: int = 20):
    """A table as wide as real ones get: 20 reproduced rows with std, intervals and long
    plugin names (one with deviations), 80 classes of per-class AP."""
    import numpy as np

    from harness.leaderboard.render import Table
    from harness.leaderboard.rows import BASELINE_DELTA, METRICS, Row, rank_rows

    rng = np.random.default_rng(0)
    classes = [f"class-name-{c:02d}" for c in range(n_classes)]
    rows = []
    for i in range(n_rows):
        method = "baseline" if i % 4 == 0 else f"method{i}"
        text = {"backbone": "resnet101", "method": method, "aug": ("M1", "M2", "M3", "M2+M3")[i % 4], "loss": "bce",
                "size": ("448", "512", "384+448+512")[i % 3], "source": "reproduced",
                "verification": ("verified", "self-reported", "2 of 3 verified")[i % 3], "seeds": "0,1,2", "runs": "3",
                "plugin": f"{method} v1 (a-long-distribution-name 10.2.3)", "precision": "bf16 +TF32", "pipeline": "3",
                "device": "NVIDIA H100 80GB HBM3", "data": "canonical", "fingerprint": "53bc472d", "deviations": "",
                BASELINE_DELTA: "" if method == "baseline" else "+12.3 [-10.5, +25.1] vs M2 512"}
        rows.append(Row(kind="reproduced", section="protocol", text=text,
                        means={key: float(rng.uniform(10, 99)) for key, _ in METRICS},
                        stds={key: float(rng.uniform(0, 9)) for key, _ in METRICS}, classes=classes,
                        per_class_ap=[None if c == 7 else float(v) for c, v in enumerate(rng.uniform(0, 1, n_classes))],
                        bundles=[f"submissions/coco2014/wang2019/run-{i}-seed{s}--0123456789ab.json" for s in range(3)],
                        links={"paper": "https://arxiv.org/abs/1911.09243", "code": "https://github.com/example/code"}))
    deviating = Row(kind="reproduced", section="deviations", text={**rows[1].text, "deviations": "epochs: 40 → 2; sizes: "
                    "32, 48, 64, 96, 128 → 40; lr_backbone: 0.001 → 0.01"}, means=rows[1].means, stds=rows[1].stds,
                    bundles=rows[1].bundles)
    rank_rows(rows)
    rank_rows([deviating])
    return Table("coco2014", "wang2019", {"protocol": rows, "deviations": [deviating]}, classes)


def test_a_page_of_20_rows_and_80_classes_fits_1280_px_and_its_heatmap_picks_rows(browser, tmp_path):
    from selenium.webdriver.common.by import By

    from harness.leaderboard.page import table_page

    path = tmp_path / "wide.html"
    path.write_text(table_page(wide_table()), encoding="utf-8")
    browser.set_window_size(1280, 1000)
    browser.get(path.as_uri())
    assert console_errors(browser) == []
    viewport = browser.execute_script("return document.documentElement.clientWidth")
    for board in browser.find_elements(By.CSS_SELECTOR, "table.board"):
        assert board.rect["x"] + board.rect["width"] <= viewport, board.get_attribute("data-section")
    deviations = browser.find_element(By.CSS_SELECTOR, 'table[data-section="deviations"] td.wrap')
    assert deviations.is_displayed() and deviations.rect["x"] + deviations.rect["width"] <= viewport
    assert "epochs: 40 → 2" in deviations.text

    details = browser.find_elements(By.CSS_SELECTOR, "tr.details")
    assert len(details) == 21 and not details[0].is_displayed()
    browser.find_element(By.CSS_SELECTOR, "button.toggle").click()
    assert details[0].is_displayed() and "NVIDIA H100 80GB HBM3" in details[0].text and "seed 2" in details[0].text

    heat = browser.find_element(By.CSS_SELECTOR, "table.heat")
    cells = heat.find_elements(By.CSS_SELECTOR, "td")
    assert len(cells) == 80 * 20 and heat.rect["x"] + heat.rect["width"] <= viewport
    assert cells[0].get_attribute("title").endswith(f"AP {cells[0].get_attribute('data-ap')}")
    assert heat.find_elements(By.CSS_SELECTOR, "td.none")[0].get_attribute("title").endswith("no positives")
    SHOTS.mkdir(exist_ok=True)
    browser.get_screenshot_as_file(str(SHOTS / "wide-top.png"))
    browser.execute_script("arguments[0].scrollIntoView()", heat)
    browser.get_screenshot_as_file(str(SHOTS / "wide-heatmap.png"))
    boxes = browser.find_elements(By.CSS_SELECTOR, ".picker input")
    assert len(boxes) == 20 and all(b.is_selected() for b in boxes)
    boxes[3].click()
    shown = [c for c in heat.find_elements(By.CSS_SELECTOR, "td") if c.is_displayed()]
    assert len(shown) == 80 * 19 and not any(c.get_attribute("data-column") == "3" for c in shown)
    assert console_errors(browser) == []
