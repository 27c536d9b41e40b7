"""The web console at /, driven in headless Chromium (Debian's ``chromium`` and ``chromium-driver``).

The server is the real app over real HTTP (uvicorn, in this process) on the fake role, whose
steps take a known time and whose outputs have a known colour per seed. Every test records each
request the browser made: none may leave this origin. The screenshot after a completed job is
kept in ``build/test-artifacts/`` (``TEST_ARTIFACTS`` to put it elsewhere).
"""

from __future__ import annotations

import json
import os
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.conftest import LocalServices, serve_over_http, wait_for
from tests.fake_role import FakeRole, colour

CHROMIUM = os.environ.get("CHROMIUM", "/usr/bin/chromium")
CHROMEDRIVER = os.environ.get("CHROMEDRIVER", "/usr/bin/chromedriver")
ARTIFACTS = Path(os.environ.get("TEST_ARTIFACTS", Path(__file__).resolve().parents[2] / "build" / "test-artifacts"))
STEP_S = 0.05
XSS = "<img src=x onerror=alert(1)>"

webdriver = pytest.importorskip("selenium.webdriver")
if not (shutil.which(CHROMIUM) and shutil.which(CHROMEDRIVER)):
    pytest.skip(
        f"the browser tier needs {CHROMIUM} and {CHROMEDRIVER}: apt-get install chromium chromium-driver "
        "(make test installs them where it may)",
        allow_module_level=True,
    )

from selenium.common.exceptions import NoAlertPresentException  # noqa: E402
from selenium.webdriver.common.by import By  # noqa: E402
from selenium.webdriver.remote.webelement import WebElement  # noqa: E402
from selenium.webdriver.support.ui import WebDriverWait  # noqa: E402


@pytest.fixture(scope="module")
def driver() -> Iterator[Any]:
    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for argument in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage", "--window-size=1400,1000"):
        options.add_argument(argument)
    # Every request the page makes, read back from Chromium's network log.
    options.set_capability("goog:loggingPrefs", {"performance": "ALL"})
    browser = webdriver.Chrome(options=options, service=webdriver.ChromeService(CHROMEDRIVER))
    browser.set_page_load_timeout(30)
    try:
        yield browser
    finally:
        browser.quit()


class Console:
    """One server and the browser on its console: what a person does, as methods."""

    def __init__(self, driver: Any, url: str, local: LocalServices) -> None:
        self.driver, self.url, self.local = driver, url, local
        driver.delete_all_cookies()  # a cookie for 127.0.0.1 would reach another test's port
        driver.get_log("performance")  # what earlier tests requested
        driver.get(url + "/")

    def find(self, selector: str) -> WebElement:
        return self.driver.find_element(By.CSS_SELECTOR, selector)

    def all(self, selector: str) -> list[WebElement]:
        return self.driver.find_elements(By.CSS_SELECTOR, selector)

    def until(self, condition: Any, timeout: float = 30) -> Any:
        return WebDriverWait(self.driver, timeout, poll_frequency=0.05).until(lambda _: condition())

    def log_in(self, username: str, password: str) -> None:
        self.until(lambda: self.find("#login").is_displayed())
        for name, value in (("username", username), ("password", password)):
            field = self.find(f"#login-form [name={name}]")
            field.clear()
            field.send_keys(value)
        self.find("#login-form button").click()
        self.until(lambda: self.find("#console").is_displayed())

    def invoke(self, prompt: str, steps: int, seed: int) -> str:
        """Fill the form as a person would and submit it; the new job's uuid."""
        self.until(lambda: self.find("#console").is_displayed() and self.all("#invoke-form [name=model] option"))
        form = {"prompt": prompt, "width": 64, "height": 64, "num_inference_steps": steps, "seed": seed}
        for name, value in form.items():
            field = self.find(f"#invoke-form [name={name}]")
            field.clear()
            field.send_keys(str(value))
        before = {card.get_attribute("data-uuid") for card in self.all(".job")}
        self.find("#invoke-form button[type=submit]").click()
        self.until(lambda: len(self.all(".job")) > len(before) or self.find("#invoke-error").text)
        assert self.find("#invoke-error").text == ""
        (uuid,) = {card.get_attribute("data-uuid") for card in self.all(".job")} - before
        return uuid

    def job(self, uuid: str) -> WebElement:
        return self.find(f'.job[data-uuid="{uuid}"]')

    def entry(self, uuid: str, status: str = "completed") -> WebElement:
        selector = f'figure.entry[data-uuid="{uuid}"][data-status="{status}"]'
        self.until(lambda: self.all(selector))
        return self.find(selector)

    def centre_pixel(self, image: WebElement) -> list[int]:
        """The image's middle pixel as the page decoded it (same origin: the canvas is readable)."""
        self.until(
            lambda: self.driver.execute_script("return arguments[0].complete && arguments[0].naturalWidth", image)
        )
        return self.driver.execute_script(
            "const image = arguments[0], canvas = document.createElement('canvas');"
            "canvas.width = image.naturalWidth; canvas.height = image.naturalHeight;"
            "const context = canvas.getContext('2d'); context.drawImage(image, 0, 0);"
            "return Array.from(context.getImageData(canvas.width >> 1, canvas.height >> 1, 1, 1).data.slice(0, 3));",
            image,
        )

    def requests(self) -> list[str]:
        """The URL of every request the browser made since this console opened."""
        urls = []
        for entry in self.driver.get_log("performance"):
            message = json.loads(entry["message"])["message"]
            if message["method"] == "Network.requestWillBeSent":
                urls.append(message["params"]["request"]["url"])
        return urls

    def assert_same_origin(self, urls: list[str]) -> None:
        strangers = [url for url in urls if not url.startswith((self.url + "/", "data:"))]
        assert urls and not strangers, strangers


@pytest.fixture
def console(driver: Any, data_dir: Path) -> Iterator[Console]:
    role = FakeRole(step_seconds=STEP_S, checkpoints=data_dir / "checkpoint")
    with serve_over_http(data_dir, role) as (url, local):
        yield Console(driver, url, local)


@pytest.fixture
def auth_console(driver: Any, data_dir: Path) -> Iterator[Console]:
    role = FakeRole(step_seconds=STEP_S, checkpoints=data_dir / "checkpoint")
    with serve_over_http(data_dir, role, auth=True) as (url, local):
        for username in ("alice", "bob"):
            local.store.accounts.create(username, f"{username}-password", None, None, False)
        yield Console(driver, url, local)


def test_a_job_shows_its_progress_then_its_image_in_the_gallery(console: Console) -> None:
    console.local.store._change_settings({"intermediate_steps": 10})
    uuid = console.invoke("a lighthouse at dusk", steps=120, seed=7)  # 6 s on the fake role
    card = console.job(uuid)
    latest = card.find_element(By.CSS_SELECTOR, ".latest")
    progress, intermediates = set(), []

    def moving() -> bool:
        """Progress seen at three values short of the end, and an intermediate image shown (gray:
        the fake role's) while it was still the latest."""
        value = card.find_element(By.TAG_NAME, "progress").get_attribute("value")
        if value is not None and 0 < float(value) < 1:
            progress.add(float(value))
        shown = latest.get_attribute("src") or ""
        if "/api/invocation/intermediates/" in shown and not intermediates:
            pixel = console.centre_pixel(latest)
            if latest.get_attribute("src") == shown:  # not replaced while it was read
                intermediates.append(pixel)
        return len(progress) >= 3 and bool(intermediates)

    console.until(moving)
    assert intermediates == [[128, 128, 128]]
    console.until(lambda: card.get_attribute("data-status") == "completed")
    assert "step 120 of 120" in card.find_element(By.CSS_SELECTOR, ".state").text

    entry = console.entry(uuid)
    assert entry.find_element(By.CSS_SELECTOR, ".prompt").text == "a lighthouse at dusk"
    assert entry.find_element(By.CSS_SELECTOR, ".meta").text.startswith("completed · ")
    image = entry.find_element(By.CSS_SELECTOR, ".pictures img")
    assert image.get_attribute("src") == f"{console.url}/api/invocation/images/{uuid}_0.png"
    assert console.centre_pixel(image) == list(colour(7))
    download = entry.find_element(By.CSS_SELECTOR, ".actions a")
    assert download.get_attribute("download") == f"{uuid}_0.png"

    entry.find_element(By.XPATH, ".//button[text()='Open']").click()
    console.until(lambda: console.find("#viewer").is_displayed())
    assert console.centre_pixel(console.find("#viewer-image")) == list(colour(7))
    console.find("#viewer-close").click()

    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    assert console.driver.save_screenshot(str(ARTIFACTS / "console-after-job.png"))
    console.assert_same_origin(console.requests())


def test_reuse_puts_a_jobs_parameters_back_in_the_form(console: Console) -> None:
    uuid = console.invoke("reuse me", steps=3, seed=11)
    console.entry(uuid).find_element(By.XPATH, ".//button[text()='Reuse']").click()
    form = {name: console.find(f"#invoke-form [name={name}]").get_attribute("value") for name in ("prompt", "seed")}
    assert form == {"prompt": "reuse me", "seed": "11"}
    assert console.find("#invoke-form [name=num_inference_steps]").get_attribute("value") == "3"


def test_a_running_job_is_cancelled_and_an_ended_one_deleted(console: Console) -> None:
    uuid = console.invoke("long", steps=900, seed=1)
    card = console.job(uuid)
    console.until(lambda: card.get_attribute("data-status") == "processing")
    card.find_element(By.CSS_SELECTOR, ".cancel").click()
    console.until(lambda: card.get_attribute("data-status") == "cancelled")
    assert not card.find_element(By.CSS_SELECTOR, ".cancel").is_displayed()

    entry = console.entry(uuid, "cancelled")
    entry.find_element(By.CSS_SELECTOR, ".delete").click()
    console.until(lambda: not console.all(f'figure.entry[data-uuid="{uuid}"]'))
    assert httpx.get(f"{console.url}/api/invocation/{uuid}").status_code == 404
    console.driver.refresh()
    console.until(lambda: console.find("#console").is_displayed() and console.all("#gallery, #more"))
    assert not console.all(f'figure.entry[data-uuid="{uuid}"]')


def test_a_prompt_with_markup_is_shown_as_text_and_runs_nothing(console: Console) -> None:
    uuid = console.invoke(XSS, steps=2, seed=3)
    entry = console.entry(uuid)
    assert entry.find_element(By.CSS_SELECTOR, ".prompt").text == XSS
    assert console.job(uuid).find_element(By.CSS_SELECTOR, ".prompt").text == XSS
    assert not console.all("img[src='x']")
    with pytest.raises(NoAlertPresentException):
        console.driver.switch_to.alert.text  # noqa: B018 - reading it is the check
    urls = console.requests()
    assert not [url for url in urls if url.endswith("/x")], "the markup's image was requested"
    console.assert_same_origin(urls)


def test_with_auth_on_a_user_logs_in_and_sees_only_their_own_images(auth_console: Console) -> None:
    console = auth_console
    bob = httpx.post(f"{console.url}/api/login", json={"username": "bob", "password": "bob-password"})
    headers = {"Authorization": f"Bearer {bob.json()['data']['attributes']['access_token']}"}
    bobs = httpx.post(f"{console.url}/api/invoke", json={"prompt": "bob's", "seed": 5}, headers=headers)
    bobs_uuid = bobs.json()["data"]["uuid"]
    wait_for(
        lambda: httpx.get(f"{console.url}/api/invocation/{bobs_uuid}", headers=headers).json()["data"]["status"],
        lambda status: status == "completed",
    )

    assert not console.find("#console").is_displayed()
    console.log_in("alice", "alice-password")
    assert not console.find("#admin-panel").is_displayed()
    uuid = console.invoke("alice's", steps=2, seed=9)
    console.entry(uuid)
    assert console.all(f'[data-uuid="{bobs_uuid}"]') == []
    assert [e.get_attribute("data-uuid") for e in console.all("figure.entry")] == [uuid]
    alices = console.requests()
    assert not [url for url in alices if bobs_uuid in url]
    console.assert_same_origin(alices)

    console.find("#logout").click()
    console.until(lambda: console.find("#login").is_displayed())
    console.log_in("enfugue", "enfugue")
    console.until(lambda: console.find("#admin-panel").is_displayed())
    console.until(lambda: "alice" in console.find("#users").text)
    assert console.find("#settings-form [name=auth]").is_selected()
    console.assert_same_origin(console.requests())


def test_the_page_forbids_inline_scripts_and_other_origins(console: Console) -> None:
    response = httpx.get(console.url + "/")
    policy = response.headers["content-security-policy"]
    assert "script-src 'self'" in policy and "default-src 'none'" in policy and "unsafe-inline" not in policy
    assert response.headers["x-content-type-options"] == "nosniff"
    for path in ("/console/..%2Fstorage%2Fstore.py", "/console/store.py", "/console/"):
        response = httpx.get(console.url + path)
        assert 400 <= response.status_code < 500 and "errors" in response.json(), path
