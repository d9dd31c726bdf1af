"""The report in a real headless Chromium: hostile records must not run, fetch or navigate.

Skipped when /usr/bin/chromium or /usr/bin/chromedriver is absent (Debian packages `chromium`,
`chromium-driver`). Saves a screenshot to tests/artifacts/report.png.
"""

from __future__ import annotations

import http.server
import json
import os
import pathlib
import sys
import threading

import pytest

sys.path.insert(0, os.path.dirname(__file__))
import fakescan  # noqa: E402

from lazaret.workflow.report import render_report  # noqa: E402

CHROMIUM = "/usr/bin/chromium"
CHROMEDRIVER = "/usr/bin/chromedriver"
ARTIFACTS = pathlib.Path(__file__).resolve().parent / "artifacts"

pytestmark = [
    pytest.mark.browser,
    pytest.mark.skipif(not (os.path.exists(CHROMIUM) and os.path.exists(CHROMEDRIVER)),
                       reason="needs /usr/bin/chromium and /usr/bin/chromedriver"),
]


class _Trap(http.server.BaseHTTPRequestHandler):
    """A local server the hostile records point at: any hit means a request left the page."""

    hits: list = []

    def do_GET(self):  # noqa: N802
        _Trap.hits.append(self.path)
        self.send_response(200)
        self.send_header("Content-Type", "text/plain")
        self.end_headers()
        self.wfile.write(b"x")

    def log_message(self, *args):
        pass


@pytest.fixture()
def trap():
    _Trap.hits = []
    srv = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Trap)
    t = threading.Thread(target=srv.serve_forever, daemon=True)
    t.start()
    yield f"http://127.0.0.1:{srv.server_address[1]}"
    srv.shutdown()
    srv.server_close()


@pytest.fixture()
def driver(tmp_path):
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    opts = webdriver.ChromeOptions()
    opts.binary_location = CHROMIUM
    for a in ("--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
              "--disable-background-networking", "--disable-component-update", "--disable-sync",
              "--disable-dev-shm-usage", "--window-size=1300,2000", f"--user-data-dir={tmp_path / 'profile'}"):
        opts.add_argument(a)
    opts.set_capability("goog:loggingPrefs", {"performance": "ALL", "browser": "ALL"})
    d = webdriver.Chrome(service=Service(executable_path=CHROMEDRIVER), options=opts)
    d.set_page_load_timeout(30)
    yield d
    d.quit()


def _hostile_scan(path: str, trap: str) -> str:
    records, clusters = fakescan.synthetic_records(25, 80, seed=11, hostile=True)
    extra = [
        f'<img src="{trap}/img" onerror="window.__pwned=5;document.title=\'PWNED\'">',
        f'<script src="{trap}/js"></script><script>window.__pwned=6</script>',
        f'<link rel="stylesheet" href="{trap}/css"><iframe src="{trap}/frame"></iframe>',
        f'<style>body{{background:url({trap}/bg)}}</style><object data="{trap}/obj"></object>',
        f'<a href="javascript:window.__pwned=7">x</a> <a href="{trap}/link">{trap}/link</a>',
        f'<svg><image href="{trap}/svgimg"/><script>window.__pwned=8</script></svg>',
        f'<meta http-equiv="refresh" content="0;url={trap}/refresh"><base href="{trap}/">',
        f'<form action="{trap}/form"><input autofocus onfocus="window.__pwned=9"></form>',
        f'<video poster="{trap}/poster"><source src="{trap}/video"></video> \ud83d lone \u202e bidi',
    ]
    for k, payload in enumerate(extra):
        records.append({"raw": {"id": f"h{k}", "text": payload}, "action": "quarantine",
                        "reasons": [{"check": "toxicity", "rule": f"fasttext {payload}", "score": 0.99,
                                     "detail": payload}],
                        "evidence": payload})
    clusters = fakescan.finish_clusters(records, clusters)
    clusters[0]["trigger"] = extra[0]           # a hostile trigger, highlighted in members
    for i, r in enumerate(records):
        r["source_index"] = i
    fakescan.write_scan(path, records, clusters)
    return render_report(path)[0]


def _requests(driver):
    urls = []
    for entry in driver.get_log("performance"):
        msg = json.loads(entry["message"])["message"]
        if msg.get("method") == "Network.requestWillBeSent":
            urls.append(msg["params"]["request"]["url"])
    return urls


def test_control_script_is_detected(driver, tmp_path):
    """The harness can see a script run (otherwise the real test proves nothing)."""
    page = tmp_path / "control.html"
    page.write_text("<html><head><title>t</title></head><body><script>window.__pwned=1;"
                    "document.title='PWNED'</script></body></html>")
    driver.get(page.as_uri())
    assert driver.execute_script("return window.__pwned") == 1
    assert driver.title == "PWNED"


def test_hostile_report_in_chromium(driver, trap, tmp_path):
    report = _hostile_scan(str(tmp_path / "scan"), trap)
    url = pathlib.Path(report).as_uri()
    driver.get("about:blank")
    driver.get_log("performance")               # drain the start-up tab's chrome:// loads
    driver.get(url)
    from selenium.webdriver.common.by import By

    assert driver.title == "Lazaret scan report"
    assert driver.execute_script("return typeof window.__pwned") == "undefined"
    assert driver.current_url == url            # no refresh / base / navigation happened
    # No request left the page: Chromium's own network log, and the trap server.
    requests = _requests(driver)
    assert requests and all(u == url for u in requests), requests
    assert _Trap.hits == []
    # Clusters and plots are there; the hostile text is visible as text.
    assert len(driver.find_elements(By.CSS_SELECTOR, ".cluster")) >= 3
    assert len(driver.find_elements(By.CSS_SELECTOR, "svg.chart")) >= 4
    assert len(driver.find_elements(By.CSS_SELECTOR, "svg.chart rect")) > 10
    assert driver.find_elements(By.CSS_SELECTOR, ".cluster mark")
    body = driver.find_element(By.TAG_NAME, "body").text
    assert "<script>window.__pwned=6</script>" in body
    assert "onerror=" in body and "javascript:window.__pwned=7" in body
    for tag in ("script", "iframe", "object", "img", "video", "form", "input", "image", "link", "base"):
        assert driver.find_elements(By.TAG_NAME, tag) == [], tag
    links = [a.get_attribute("href") for a in driver.find_elements(By.TAG_NAME, "a")]
    assert all(link.startswith("file://") for link in links), links
    # Screenshot of the whole page for the test artifacts.
    ARTIFACTS.mkdir(exist_ok=True)
    height = min(int(driver.execute_script("return document.body.scrollHeight")), 8000)
    driver.set_window_size(1300, height)
    assert driver.save_screenshot(str(ARTIFACTS / "report.png"))
    assert _Trap.hits == [] and all(u == url for u in _requests(driver))
