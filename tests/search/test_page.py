"""The web page end to end in headless Chromium (Debian's chromium + chromedriver, through selenium)."""

import os
import shutil
from pathlib import Path

import pytest

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
DRIVER = shutil.which("chromedriver")

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(not (CHROMIUM and DRIVER), reason="needs Debian's chromium and chromium-driver (apt-get install chromium chromium-driver)"),
]


@pytest.fixture(scope="module")
def browser():
    webdriver = pytest.importorskip("selenium.webdriver")
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for arg in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage", "--disable-gpu", "--window-size=1200,900"):
        options.add_argument(arg)
    driver = webdriver.Chrome(service=Service(DRIVER), options=options)
    driver.set_page_load_timeout(60)
    yield driver
    driver.quit()


def _wait(driver, condition, timeout=60):
    from selenium.webdriver.support.ui import WebDriverWait

    return WebDriverWait(driver, timeout).until(condition)


def test_shared_link_runs_the_query_shows_results_and_details(browser, scene_index, clip, tmp_path):
    from selenium.webdriver.common.by import By

    from cliplab.search import query_vector
    from cliplab.search.loadtest import running_server
    from cliplab.search.service import create_app

    want = scene_index.search(query_vector(clip, text="a red star"), 6)[0]
    app = create_app(scene_index, clip, api_key="k3y")
    with running_server(app) as url:
        browser.get(f"{url}/?q=a+red+star&api_key=k3y")
        _wait(browser, lambda d: len(d.find_elements(By.CSS_SELECTOR, ".hit")) >= 6)
        cards = browser.find_elements(By.CSS_SELECTOR, ".hit")
        assert [c.get_attribute("data-id") for c in cards[:6]] == [h["id"] for h in want]
        assert cards[0].find_element(By.CSS_SELECTOR, ".score").text == f"{want[0]['score']:.3f}"
        assert cards[0].find_element(By.CSS_SELECTOR, ".caption").text == want[0]["caption"]
        # every thumbnail is loaded from /images/{id} with the key (a blob URL once fetched)
        _wait(browser, lambda d: all((img.get_attribute("src") or "").startswith("blob:") and d.execute_script("return arguments[0].naturalWidth", img) > 0
                                    for img in d.find_elements(By.CSS_SELECTOR, ".hit img")))
        assert "api_key" not in browser.current_url and "q=a+red+star" in browser.current_url
        artefacts = Path(os.environ.get("CLIPLAB_ARTIFACTS", tmp_path))
        artefacts.mkdir(parents=True, exist_ok=True)
        browser.save_screenshot(str(artefacts / "search_page.png"))
        cards[0].click()
        _wait(browser, lambda d: d.find_element(By.ID, "detail").is_displayed())
        assert want[0]["id"] in browser.find_element(By.ID, "detail-meta").text
        browser.save_screenshot(str(artefacts / "search_detail.png"))
    assert (artefacts / "search_page.png").stat().st_size > 10_000
