"""The demo page in a real browser: Debian's headless Chromium, driven by Selenium, on the
page that `python cgan.py demo --pretrained mnist` serves on 127.0.0.1 (a subprocess)."""
import io
import os
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from selenium import webdriver
from selenium.webdriver.chrome.service import Service
from selenium.webdriver.common.by import By
from selenium.webdriver.common.keys import Keys
from selenium.webdriver.support.ui import WebDriverWait

REPO = Path(__file__).resolve().parents[1]
CHROMIUM = '/usr/bin/chromium'          # Debian's packages chromium and chromium-driver (.ci/run)
CHROMEDRIVER = '/usr/bin/chromedriver'
CHROMIUM_FLAGS = ['--headless', '--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run',
                  '--disable-background-networking', '--disable-component-update', '--disable-sync']
STARTUP_SECONDS = 120   # TensorFlow and Gradio import, on a busy machine
ANSWER_SECONDS = 30
SIDE = 28


def free_port():
    with socket.socket() as probe:
        probe.bind(('127.0.0.1', 0))
        return probe.getsockname()[1]


def demo_command(*arguments):
    env = {**os.environ, 'TF_CPP_MIN_LOG_LEVEL': '3', 'GRADIO_ANALYTICS_ENABLED': 'False'}
    return [sys.executable, str(REPO / 'cgan.py'), 'demo', *arguments], env


@pytest.fixture(scope='module')
def demo(tmp_path_factory):
    """The page's address, served by `cgan.py demo --pretrained mnist` on a free port."""
    port = free_port()
    command, env = demo_command('--pretrained', 'mnist', '--port', str(port))
    log = tmp_path_factory.mktemp('demo') / 'demo.log'
    with open(log, 'w') as output:
        server = subprocess.Popen(command, cwd=log.parent, env=env, stdout=output, stderr=subprocess.STDOUT)
    url = f'http://127.0.0.1:{port}/'
    try:
        deadline = time.monotonic() + STARTUP_SECONDS
        while True:
            assert server.poll() is None, log.read_text()[-3000:]
            try:
                urllib.request.urlopen(url, timeout=5).read()
                break
            except OSError:
                assert time.monotonic() < deadline, log.read_text()[-3000:]
                time.sleep(0.5)
        yield url
    finally:
        server.terminate()
        server.wait(timeout=30)


@pytest.fixture(scope='module')
def browser(tmp_path_factory):
    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for flag in CHROMIUM_FLAGS + [f'--user-data-dir={tmp_path_factory.mktemp("chromium")}',
                                  '--window-size=1280,2000']:
        options.add_argument(flag)
    driver = webdriver.Chrome(service=Service(CHROMEDRIVER), options=options)
    try:
        yield driver
    finally:
        driver.quit()


def fetched(url):
    with urllib.request.urlopen(url, timeout=ANSWER_SECONDS) as answer:
        return answer.read()


def set_number(browser, elem_id, value):
    field = browser.find_element(By.CSS_SELECTOR, f'#{elem_id} input[type=number]')
    field.send_keys(Keys.CONTROL, 'a')
    field.send_keys(str(value), Keys.TAB)


def choose_class(browser, name):
    field = browser.find_element(By.CSS_SELECTOR, '#class input')
    field.click()
    option = WebDriverWait(browser, ANSWER_SECONDS).until(
        lambda b: b.find_element(By.CSS_SELECTOR, f'ul[role=listbox] li[role=option][aria-label="{name}"]'))
    option.click()
    WebDriverWait(browser, ANSWER_SECONDS).until(lambda b: field.get_attribute('value') == name)


def grid_source(browser):
    images = browser.find_elements(By.CSS_SELECTOR, '#grid img')
    return images[0].get_attribute('src') if images else None


def draw(browser, seed):
    """Click Draw with `seed`; the address of the grid it shows, once it has changed."""
    before = grid_source(browser)
    set_number(browser, 'seed', seed)
    browser.find_element(By.CSS_SELECTOR, '#draw').click()
    return WebDriverWait(browser, ANSWER_SECONDS).until(
        lambda b: (source := grid_source(b)) not in (None, before) and source)


def test_the_page_draws_the_class_and_seed_asked_for(demo, browser):
    browser.get(demo)
    WebDriverWait(browser, STARTUP_SECONDS).until(lambda b: b.find_elements(By.CSS_SELECTOR, '#draw'))
    assert browser.title == 'cgan demo'
    choose_class(browser, '8')
    set_number(browser, 'size', 4)
    first = fetched(draw(browser, 3))
    other = fetched(draw(browser, 4))
    again = fetched(draw(browser, 3))
    assert first == again and first != other  # the same seed, the same grid

    links = {Path(link.get_attribute('href')).suffix: link.get_attribute('href')
             for link in browser.find_elements(By.CSS_SELECTOR, '#downloads a[href]')}
    png = Image.open(io.BytesIO(fetched(links['.png'])))
    assert png.format == 'PNG' and png.size == (4 * SIDE, 4 * SIDE)  # 4 x 4 images of 28 x 28
    images = np.load(io.BytesIO(fetched(links['.npy'])), allow_pickle=False)
    assert images.shape == (16, SIDE, SIDE, 1) and images.dtype == np.float32
    assert -1 <= images.min() and images.max() <= 1


def test_a_model_that_does_not_load_is_one_line_before_any_server(tmp_path):
    command, env = demo_command(str(tmp_path / 'missing'), '--port', str(free_port()))
    result = subprocess.run(command, env=env, capture_output=True, text=True, timeout=300)
    assert result.returncode == 2 and result.stdout == ''
    assert result.stderr == f'cgan.py demo: error: no model {tmp_path / "missing"}: expected a pickled CGan or a run folder\n'


def test_without_gradio_the_demo_says_how_to_install_it(tmp_path):
    command, env = demo_command('--pretrained', 'mnist')
    code = f"import sys; sys.modules['gradio'] = None; sys.argv = {command[1:]!r}; exec(open(sys.argv[0]).read())"
    result = subprocess.run([sys.executable, '-c', code], env=env, capture_output=True, text=True, timeout=300)
    assert result.returncode == 1
    assert result.stderr == 'cgan.py demo: error: the demo page needs Gradio, an optional extra: pip install -e ".[demo]"\n'
