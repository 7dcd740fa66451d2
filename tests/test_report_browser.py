"""The report's page in a real headless Chromium (the system's, driven by Selenium): it loads from a
file:// URL without console errors, its leaderboard has a row per group, the images in view load,
a click on a column header sorts, the gallery's filter hides the other groups and its pages come
one at a time. Skipped, with the reason, where Chromium, chromedriver or Selenium is missing
(`.ci/run` installs Chromium and its driver)."""

from __future__ import annotations

import json
import time

import pytest

from lmmeval.report import browser
from lmmeval.report.write import write_report
from tests.test_report import THREE_GENERATORS, make_study

pytestmark = pytest.mark.skipif(browser.missing() is not None, reason=f"no headless Chromium: {browser.missing()}")


@pytest.fixture(scope="module")
def report_page(tmp_path_factory):
    root = tmp_path_factory.mktemp("study")
    study = make_study(root, THREE_GENERATORS, failed=("G2_3",), ood=("G3_0",))
    write_report(root / "report", [study["results"]], manifest=study["manifest"], bootstrap=200)
    return root / "report" / "index.html"


@pytest.fixture(scope="module")
def big_page(tmp_path_factory):
    """150 inputs in 3 groups, without pictures: more than two gallery pages."""
    root = tmp_path_factory.mktemp("big")
    scores = {g: [(float((7 * k + j) % 97), float((3 * k + j) % 89)) for k in range(50)] for j, g in enumerate("ABC")}
    study = make_study(root, scores, snapshots=False)
    write_report(root / "report", [study["results"]], bootstrap=200, thumbnails=False)
    return root / "report" / "index.html"


@pytest.fixture(scope="module")
def driver():
    with browser.headless_chromium(1280, 900) as d:
        yield d


def _open(driver, page):
    driver.get(page.as_uri())
    driver.get_log("browser")  # a fresh log for this page only
    driver.get(page.as_uri())


def _wait(driver, script: str, timeout: float = 10.0):
    end = time.time() + timeout
    while time.time() < end:
        value = driver.execute_script(script)
        if value:
            return value
        time.sleep(0.1)
    raise AssertionError(f"timed out waiting for: {script}")


def _board_groups(driver) -> list[str]:
    return driver.execute_script(
        "return Array.from(document.querySelectorAll('#leaderboard tbody tr')).map(r => r.cells[0].textContent)")


def test_page_loads_from_a_file_url_without_console_errors(driver, report_page):
    _open(driver, report_page)
    assert driver.title.startswith("lmmeval report")
    _wait(driver, "return document.body.getAttribute('data-gallery-ready')")
    errors = [e for e in driver.get_log("browser") if e["level"] in ("SEVERE", "WARNING")]
    assert errors == []
    # Nothing is fetched from outside the page's folder but the inputs' own links.
    external = driver.execute_script(
        "return Array.from(document.querySelectorAll('script[src], link[rel=stylesheet], img'))"
        ".map(e => e.getAttribute('src') || e.getAttribute('href')).filter(u => /^[a-z]+:/i.test(u))")
    assert external == []


def test_leaderboard_has_one_row_per_group(driver, report_page):
    _open(driver, report_page)
    assert sorted(_board_groups(driver)) == ["G1", "G2", "G3"]


def test_every_image_in_view_has_loaded(driver, report_page):
    _open(driver, report_page)
    in_view = ("return Array.from(document.images).filter(i => { const r = i.getBoundingClientRect();"
               " return r.bottom > 0 && r.top < innerHeight && r.width > 0; })")
    checked = 0
    for target in ("#distortions", "#plots", "#gallery"):
        driver.execute_script(f"document.querySelector('{target}').scrollIntoView()")
        # Lazy images start loading when they come into view: wait until they have.
        _wait(driver, in_view + ".every(i => i.complete)")
        sizes = driver.execute_script(in_view + ".map(i => [i.getAttribute('src'), i.naturalWidth])")
        assert sizes and all(width > 0 for _, width in sizes), sizes
        checked += len(sizes)
    assert checked >= 5


def test_clicking_a_column_header_sorts_the_rows(driver, report_page):
    _open(driver, report_page)
    assert _board_groups(driver) == ["G1", "G3", "G2"]  # by mean quality, highest first
    header = driver.find_element("css selector", "#leaderboard thead th:first-child button")
    header.click()
    assert _board_groups(driver) == ["G1", "G2", "G3"]
    header.click()
    assert _board_groups(driver) == ["G3", "G2", "G1"]
    authenticity = driver.find_element("xpath", "//table[@id='leaderboard']//th[starts-with(., 'authenticity')]/button")
    authenticity.click()  # ascending means: G3 (33; G3_0 is out of distribution), G2 (49.7), G1 (63)
    assert _board_groups(driver) == ["G3", "G2", "G1"]
    assert authenticity.find_element("xpath", "..").get_attribute("aria-sort") == "ascending"


def test_a_group_filter_hides_the_other_groups(driver, report_page):
    from selenium.webdriver.support.select import Select

    _open(driver, report_page)
    items = "return Array.from(document.querySelectorAll('#gallery-items .item')).map(i => i.dataset.group)"
    assert sorted(driver.execute_script(items)) == sorted(g for g, vs in THREE_GENERATORS.items() for _ in vs)
    Select(driver.find_element("id", "filter-group")).select_by_value("G2")
    assert driver.execute_script(items) == ["G2"] * 4
    Select(driver.find_element("id", "filter-category")).select_by_visible_text("Eye Distortions")
    assert driver.execute_script(items) == ["G2"]  # G2_1 (G2_3 failed: no categories)
    Select(driver.find_element("id", "filter-group")).select_by_value("")
    Select(driver.find_element("id", "filter-category")).select_by_value("")
    Select(driver.find_element("id", "filter-flag")).select_by_value("ood")
    assert driver.execute_script(items) == ["G3"]


def test_gallery_is_worst_first_and_rendered_a_page_at_a_time(driver, big_page):
    _open(driver, big_page)
    count = "return document.querySelectorAll('#gallery-items .item').length"
    assert driver.execute_script(count) == 60
    data = json.loads(driver.execute_script("return document.getElementById('gallery-data').textContent"))
    shown = driver.execute_script(
        "return Array.from(document.querySelectorAll('#gallery-items .item .name')).map(a => a.textContent)")
    worst = sorted(data["items"], key=lambda i: (i["q"], i["i"]))[:60]
    assert shown == [i["id"] for i in worst]
    driver.execute_script("document.getElementById('gallery-more').click()")
    assert driver.execute_script(count) == 120
    driver.execute_script("document.getElementById('gallery-more').click()")
    assert driver.execute_script(count) == 150
    assert driver.execute_script("return document.getElementById('gallery-more').hidden")
