"""The factory's web UI in a real browser: headless Chromium, driven by selenium.

The test walks the wizard (platform, arch, an extension found by search, kernel
arguments, META) and checks that the ID it ends on is the API's for the same schematic.
The result page's screenshot is kept under _out/ as a CI artifact.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
from factory_server import serve_factory
from project import FIXED, REPO
from realgraph import clone

pytestmark = pytest.mark.slow
SCREENSHOT = REPO / "_out" / "test-artifacts" / "factory-ui.png"


@pytest.fixture(scope="module")
def browser():
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = shutil.which("chromium") or "/usr/bin/chromium"
    for flag in ("--headless=new", "--no-sandbox", "--disable-gpu", "--window-size=1200,1600",
                 "--disable-dev-shm-usage", "--no-proxy-server"):  # fmt: skip
        options.add_argument(flag)
    driver = webdriver.Chrome(options=options, service=Service("/usr/bin/chromedriver"))
    driver.implicitly_wait(30)  # a form's answer may take a moment on a busy machine
    try:
        yield driver
    finally:
        driver.quit()


def test_the_wizard_ends_on_the_api_s_id_for_the_same_choices(tmp_path: Path, browser) -> None:
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import Select

    root, cache = clone(tmp_path / "repo"), tmp_path / "cache"
    with serve_factory(root, cache) as factory:
        browser.get(factory.url + "/")
        Select(browser.find_element(By.ID, "target")).select_by_value("platform:aws")
        browser.find_element(By.CSS_SELECTOR, "input[name=arch][value=arm64]").click()
        browser.find_element(By.ID, "ext-search").send_keys("hello")
        boxes = browser.find_elements(By.CSS_SELECTOR, "#extensions label")
        shown = [box.text for box in boxes if box.is_displayed()]
        assert len(shown) == 1 and shown[0].startswith("buildgraph/ext-hello"), shown
        browser.find_element(By.CSS_SELECTOR, "input[value='buildgraph/ext-hello']").click()
        browser.find_element(By.ID, "kernel-args").send_keys("net.ifnames=0 quiet")
        browser.find_element(By.ID, "meta").send_keys("0xa=hello")
        browser.find_element(By.ID, "create").click()
        shown_id = browser.find_element(By.ID, "schematic-id")
        assert shown_id.is_displayed()
        SCREENSHOT.parent.mkdir(parents=True, exist_ok=True)
        browser.save_screenshot(str(SCREENSHOT))
        assert SCREENSHOT.stat().st_size > 0

        document = (
            "customization:\n"
            "  extraKernelArgs: [net.ifnames=0, quiet]\n"
            "  meta: [{key: 0xa, value: hello}]\n"
            "  systemExtensions: {officialExtensions: [buildgraph/ext-hello]}\n"
        )
        answer = factory.request("POST", "/schematics", document.encode())
        assert answer.status == 201, answer.text
        api_id = json.loads(answer.body)["id"]
        assert shown_id.text == api_id
        links = [a.get_attribute("href") for a in browser.find_elements(By.CSS_SELECTOR, "a.asset")]
        assert f"{factory.url}/image/{api_id}/{FIXED['TAG']}/aws-arm64.raw.xz" in links
        pxe = browser.find_element(By.ID, "pxe-url").text
        assert pxe == f"{factory.url}/pxe/{api_id}/{FIXED['TAG']}/aws-arm64"
        installer = browser.find_element(By.ID, "installer").text
        assert installer.startswith("none for aws")
        browser.get(factory.url + "/")  # metal, and nothing else chosen: the empty schematic
        browser.find_element(By.ID, "create").click()
        empty = "376567988ad370138ad8b2698212367b8edcb69b5fd68c80be1f2ec7d603b4ba"
        assert browser.find_element(By.ID, "schematic-id").text == empty
        installer = browser.find_element(By.ID, "installer").text
        assert installer == f"127.0.0.1:{factory.port}/metal-installer/{empty}:{FIXED['TAG']}"


def test_a_bad_choice_comes_back_as_the_form_with_the_message(tmp_path: Path, browser) -> None:
    from selenium.webdriver.common.by import By

    root, cache = clone(tmp_path / "repo"), tmp_path / "cache"
    with serve_factory(root, cache) as factory:
        browser.get(factory.url + "/")
        browser.find_element(By.ID, "meta").send_keys("300=x")
        browser.find_element(By.ID, "create").click()
        error = browser.find_element(By.ID, "error")
        assert "meta" in error.text and "300" in error.text
        assert browser.find_element(By.ID, "wizard").is_displayed()
