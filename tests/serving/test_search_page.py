"""The search page in a real browser: headless Chromium (Debian's `chromium` and
`chromium-driver`, which `make install` installs) driven by selenium against `alignpipe serve`
on 127.0.0.1. A text query shows result images; an uploaded image shows the images nearest it,
itself first; image + text shows the weight slider and their results.

Screenshots of the text and image searches are written to `$ALIGNPIPE_SCREENSHOT_DIR` when it is
set, else to the test's temporary folder.
"""

from __future__ import annotations

import base64
import os
import shutil

import pytest
from PIL import Image
from selenium import webdriver
from selenium.webdriver.chrome.service import Service
from selenium.webdriver.common.by import By
from selenium.webdriver.support.ui import WebDriverWait

from tests.serving.conftest import free_socket, serve_process

pytestmark = pytest.mark.large  # a server process and a browser

CHROMIUM, CHROMEDRIVER = "/usr/bin/chromium", "/usr/bin/chromedriver"
WINDOW = (1280, 900)


@pytest.fixture(scope="module")
def browser():
    """Headless Chromium; missing, the test fails (`make install` installs it)."""
    missing = [path for path in (CHROMIUM, CHROMEDRIVER) if not shutil.which(path)]
    assert not missing, (
        f"{', '.join(missing)} missing: apt-get install chromium chromium-driver (make install)"
    )
    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for argument in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage", "--disable-gpu"):
        options.add_argument(argument)
    options.add_argument(f"--window-size={WINDOW[0]},{WINDOW[1]}")
    with pytest.MonkeyPatch.context() as env:
        env.setenv("SE_OFFLINE", "true")  # Selenium Manager: nothing downloaded, ever
        driver = webdriver.Chrome(options=options, service=Service(executable_path=CHROMEDRIVER))
    driver.set_page_load_timeout(60)
    yield driver
    driver.quit()


@pytest.fixture(scope="module")
def page_url(model_dir, index_dir):
    """`alignpipe serve --model MODEL --index INDEX` as a user starts it."""
    with free_socket() as sock:
        port = sock.getsockname()[1]
    base = f"http://127.0.0.1:{port}"
    with serve_process(
        ["--model", model_dir, "--index", index_dir, "--port", str(port)], {}, f"{base}/health"
    ):
        yield base + "/"


def loaded_cards(driver) -> list:
    """The result cards once the thumbnails in view have loaded (an empty list until then);
    the page loads those further down lazily, as they are scrolled to."""
    cards = driver.find_elements(By.CSS_SELECTOR, "#results .card")
    in_view = driver.execute_script(
        "return [...document.querySelectorAll('#results .card img')]"
        ".filter(i => i.getBoundingClientRect().top < innerHeight)"
        ".map(i => i.complete && i.naturalWidth > 0)"
    )
    return cards if in_view and all(in_view) else []


def screenshot(driver, name: str, tmp_path) -> None:
    folder = os.environ.get("ALIGNPIPE_SCREENSHOT_DIR") or str(tmp_path)
    path = os.path.join(folder, name)
    assert driver.save_screenshot(path)
    with Image.open(path) as image:
        assert image.format == "PNG" and image.size[0] >= WINDOW[0] // 2


def test_a_text_query_shows_result_images(browser, page_url, tmp_path, index_dir):
    browser.get(page_url)
    WebDriverWait(browser, 30).until(
        lambda d: "40 images indexed" in d.find_element(By.ID, "index-info").text
    )
    browser.find_element(By.ID, "query-text").send_keys("a green triangle above an orange diamond")
    browser.find_element(By.ID, "search-button").click()
    cards = WebDriverWait(browser, 60).until(loaded_cards)
    assert len(cards) == 24
    first = cards[0]
    assert first.find_element(By.CSS_SELECTOR, ".score").text.startswith("score ")
    link = first.find_element(By.CSS_SELECTOR, "a")
    assert link.text == "source page" and link.get_attribute("href").startswith("http://127.0.0.1:")
    alt = first.find_element(By.TAG_NAME, "img").get_attribute("alt")
    assert alt and alt == first.find_element(By.CSS_SELECTOR, ".alt").text
    assert len(browser.find_elements(By.CSS_SELECTOR, "#nearest-texts li")) == 5
    assert browser.find_element(By.ID, "status").text == "24 results"
    screenshot(browser, "search-text.png", tmp_path)


def test_an_uploaded_image_shows_the_images_nearest_it(
    browser, page_url, tmp_path, demo_web, retrieval_images
):
    browser.get(page_url)
    name = retrieval_images[3][2]
    path = os.path.join(os.path.dirname(demo_web.retrieval_set), "images", name)
    browser.find_element(By.ID, "image-input").send_keys(path)
    WebDriverWait(browser, 60).until(
        lambda d: (cards := loaded_cards(d))
        and cards[0].find_element(By.TAG_NAME, "img").get_attribute("src").endswith("/thumbnails/3")
    )
    assert browser.find_element(By.ID, "image-preview").is_displayed()
    assert browser.find_element(By.ID, "results-title").text == "Images for image to images"
    assert not browser.find_element(By.ID, "weights").is_displayed()  # no text: no weights
    screenshot(browser, "search-image.png", tmp_path)

    # Image + text: the slider appears, and moving it searches again with the new weights.
    browser.find_element(By.ID, "query-text").send_keys("in blue")
    assert browser.find_element(By.ID, "weights").is_displayed()
    browser.find_element(By.ID, "search-button").click()
    WebDriverWait(browser, 60).until(
        lambda d: d.find_element(By.ID, "results-title").text == "Images for image text to images"
        and loaded_cards(d)
    )
    browser.execute_script(
        "const s = document.getElementById('text-weight'); s.value = 0;s.dispatchEvent(new Event('input'))"
    )
    assert browser.find_element(By.ID, "weight-value").text == "image 1.00 · text 0.00"
    WebDriverWait(browser, 60).until(
        lambda d: (cards := loaded_cards(d))
        and cards[0].find_element(By.TAG_NAME, "img").get_attribute("src").endswith("/thumbnails/3")
    )


DROP = """
const [name, b64] = arguments;
const bytes = Uint8Array.from(atob(b64), (c) => c.charCodeAt(0));
const transfer = new DataTransfer();
transfer.items.add(new File([bytes], name, { type: "image/png" }));
const zone = document.getElementById("drop-zone");
for (const kind of ["dragenter", "dragover", "drop"]) {
  zone.dispatchEvent(new DragEvent(kind, { dataTransfer: transfer, bubbles: true, cancelable: true }));
}
"""


def test_an_image_dropped_on_the_page_is_searched(browser, page_url, retrieval_images):
    browser.get(page_url)
    data, _, name = retrieval_images[7]
    browser.execute_script(DROP, name, base64.b64encode(data).decode())
    WebDriverWait(browser, 60).until(
        lambda d: (cards := loaded_cards(d))
        and cards[0].find_element(By.TAG_NAME, "img").get_attribute("src").endswith("/thumbnails/7")
    )
    assert "dragging" not in browser.find_element(By.ID, "drop-zone").get_attribute("class")


def test_a_file_that_is_not_an_image_is_refused_on_the_page(browser, page_url, tmp_path):
    browser.get(page_url)
    path = tmp_path / "notes.png"  # a name that says image, bytes that do not
    path.write_bytes(b"these are notes, not pixels")
    browser.find_element(By.ID, "image-input").send_keys(str(path))
    status = WebDriverWait(browser, 60).until(
        lambda d: (s := d.find_element(By.ID, "status")).get_attribute("class") == "muted error" and s
    )
    assert status.text.startswith("image is not a JPEG, PNG, GIF, WebP or BMP file")
