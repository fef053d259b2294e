"""The dashboard in a real browser: Debian's headless Chromium driven by Selenium through
Debian's chromedriver (never a browser download), against a real worker.

Screenshots go to ``FLOWQ_TEST_ARTIFACTS`` (default ``.test-artifacts/``, git-ignored).
"""

from __future__ import annotations

import base64
import os
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from selenium import webdriver
from selenium.webdriver.chrome.service import Service
from selenium.webdriver.common.by import By
from selenium.webdriver.support.ui import WebDriverWait

from flowq import chord, group
from tests.dashboard.conftest import DashboardProcess
from tests.integration.app import add, fail, sleep, tsum
from tests.integration.harness import ROOT, Cluster

pytestmark = pytest.mark.timeout(120)

CHROMIUM, CHROMEDRIVER = "/usr/bin/chromium", "/usr/bin/chromedriver"
FLAGS = ("--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
         "--disable-background-networking", "--disable-component-update", "--disable-sync",
         "--window-size=1400,820")
ARTIFACTS = Path(os.environ.get("FLOWQ_TEST_ARTIFACTS", ROOT / ".test-artifacts"))


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    missing = [path for path in (CHROMIUM, CHROMEDRIVER) if not os.path.exists(path)]
    if missing:
        message = f"{' and '.join(missing)} missing: apt-get install -y chromium chromium-driver"
        if os.environ.get("CI"):
            pytest.fail(message + " (.ci/run installs them)")
        pytest.skip(message)
    profile = tempfile.mkdtemp(prefix="flowq-chromium-")
    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for flag in (*FLAGS, f"--user-data-dir={profile}"):
        options.add_argument(flag)
    driver = webdriver.Chrome(service=Service(CHROMEDRIVER), options=options)
    try:
        yield driver
    finally:
        driver.quit()
        shutil.rmtree(profile, ignore_errors=True)


def screenshot(driver: Any, name: str) -> Path:
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    path = ARTIFACTS / f"{name}.png"
    driver.save_screenshot(str(path))
    return path


def node_states(driver: Any) -> list[str]:
    return [g.get_attribute("data-state") for g in
            driver.find_elements(By.CSS_SELECTOR, "#graph g.node")]


def test_a_chord_page_turns_every_node_success_without_reloading(
        cluster: Cluster, dashboard: DashboardProcess, browser: Any) -> None:
    # Given a chord whose parts take a moment, opened as soon as it is sent
    handle = chord([sleep.si(1.5, i) for i in range(3)] + [add.si(2, 2)], tsum.s()).delay()
    root_id = handle.root_id
    browser.get(f"{dashboard.url}/workflows/{root_id}")
    wait = WebDriverWait(browser, 30, poll_frequency=0.1)
    wait.until(lambda d: len(node_states(d)) == 6)
    assert set(node_states(browser)) & {"PENDING", "RECEIVED", "STARTED"}
    browser.execute_script("window.flowqMarker = 'same page';")

    # Then, polled in place, every node turns SUCCESS
    wait.until(lambda d: node_states(d) == ["SUCCESS"] * 6)
    assert browser.execute_script("return window.flowqMarker") == "same page"
    assert handle.get(timeout=20) == 7
    paths = [g.get_attribute("data-path") for g in
             browser.find_elements(By.CSS_SELECTOR, "#graph g.node")]
    assert paths[-1] == "chord.body"
    assert "SUCCESS" in browser.find_element(By.CSS_SELECTOR, ".summary").text
    screenshot(browser, "dashboard-chord-success")


def test_clicking_a_failed_node_shows_its_traceback(
        cluster: Cluster, dashboard: DashboardProcess, browser: Any) -> None:
    handle = chord([add.s(1, 1), fail.s("boom"), group(add.s(2, 2), add.s(3, 3))],
                   tsum.s()).delay()
    with pytest.raises(Exception, match="expected failure"):
        handle.get(timeout=20)
    browser.get(f"{dashboard.url}/workflows/{handle.root_id}")
    wait = WebDriverWait(browser, 30, poll_frequency=0.1)
    failed = wait.until(lambda d: d.find_element(
        By.CSS_SELECTOR, "#graph g.node[data-task$='.fail'][data-state='FAILURE']"))
    failed.click()
    traceback = wait.until(lambda d: d.find_element(By.ID, "node-traceback"))
    assert "ValueError: expected failure ('boom',)" in traceback.text
    assert browser.find_element(By.ID, "node-exception").text == (
        "ValueError: expected failure ('boom',)")
    assert browser.find_element(By.ID, "panel").get_attribute("data-index") == "1"
    screenshot(browser, "dashboard-failed-node")
    browser.get(f"{dashboard.url}/workflows")
    wait.until(lambda d: d.find_elements(By.CSS_SELECTOR,
                                         f"tr[data-root-id='{handle.root_id}']"))
    screenshot(browser, "dashboard-workflows")


def test_without_the_token_the_browser_is_refused(cluster: Cluster, browser: Any) -> None:
    guarded = DashboardProcess(cluster, env={"FLOWQ_DASHBOARD_TOKEN": "s3cret"})
    try:
        guarded.wait_ready()
        browser.get(f"{guarded.url}/workflows")  # answered 401: a basic-auth challenge
        assert browser.title != "flowq dashboard"
        assert not browser.find_elements(By.CSS_SELECTOR, "nav, #main")
        # with the token as the basic-auth password, the pages and their API calls work
        credentials = base64.b64encode(b"ops:s3cret").decode()
        browser.execute_cdp_cmd("Network.enable", {})
        browser.execute_cdp_cmd("Network.setExtraHTTPHeaders",
                                {"headers": {"Authorization": f"Basic {credentials}"}})
        browser.get(f"{guarded.url}/workers")
        WebDriverWait(browser, 30, poll_frequency=0.1).until(
            lambda d: d.find_elements(By.CSS_SELECTOR, "tr[data-worker]"))
        assert not browser.find_element(By.ID, "error").is_displayed()
    finally:
        browser.execute_cdp_cmd("Network.setExtraHTTPHeaders", {"headers": {}})
        guarded.stop()
