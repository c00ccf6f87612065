"""Open an HTML file in headless Chromium and report what went wrong, with a full-page screenshot.

Driven over the Chrome DevTools Protocol (CDP, https://chromedevtools.github.io/devtools-protocol/)
on a localhost websocket, which reports problems as structured events rather than log lines:

* ``Runtime.exceptionThrown`` (uncaught script errors), ``Runtime.consoleAPICalled`` with type
  ``error``/``assert``, ``Log.entryAdded`` with level ``error`` (e.g. a resource that failed to
  load) and ``Network.loadingFailed`` are all collected as console errors;
* after the ``load`` event, every ``<img>`` must be decoded (``naturalWidth > 0``);
* ``Page.captureScreenshot`` saves the whole page (``captureBeyondViewport``).

Chromium runs with a throw-away profile and without background networking, component updates or
sync, so nothing leaves the machine. Needs Debian's ``chromium`` (or ``chromium-browser``,
``google-chrome``) on ``PATH`` and the ``websockets`` package.
"""
from __future__ import annotations

import base64
import json
import shutil
import subprocess
import tempfile
import time
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path

from pipeline.imageio import write_bytes

BROWSERS = ("chromium", "chromium-browser", "google-chrome", "google-chrome-stable")
FLAGS = ("--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
         "--disable-component-update", "--disable-sync", "--no-first-run", "--no-default-browser-check",
         "--disable-extensions", "--mute-audio", "--remote-debugging-port=0", "--remote-allow-origins=*")


@dataclass
class RenderCheck:
    """Outcome of :func:`render_check`."""

    console_errors: list[str] = field(default_factory=list)
    images: int = 0
    broken_images: list[str] = field(default_factory=list)
    title: str = ""
    page_height: int = 0
    screenshot: Path | None = None

    @property
    def ok(self) -> bool:
        return not self.console_errors and not self.broken_images


def find_browser() -> str | None:
    """Path of a Chromium-family browser on ``PATH`` (``None`` if there is none)."""
    for name in BROWSERS:
        path = shutil.which(name)
        if path:
            return path
    return None


class _CDP:
    """Minimal synchronous CDP client: numbered commands, events buffered while waiting."""

    def __init__(self, url: str, timeout: float):
        from websockets.sync.client import connect

        self.ws = connect(url, max_size=None, open_timeout=timeout, proxy=None)
        self.timeout = timeout
        self.next_id = 0
        self.events: list[dict] = []

    def call(self, method: str, **params) -> dict:
        self.next_id += 1
        ident = self.next_id
        self.ws.send(json.dumps({"id": ident, "method": method, "params": params}))
        deadline = time.monotonic() + self.timeout
        while True:
            message = json.loads(self.ws.recv(timeout=max(0.1, deadline - time.monotonic())))
            if message.get("id") == ident:
                if "error" in message:
                    raise RuntimeError(f"CDP {method} failed: {message['error']}")
                return message.get("result", {})
            self.events.append(message)

    def wait_for(self, event: str) -> None:
        deadline = time.monotonic() + self.timeout
        while not any(e.get("method") == event for e in self.events):
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise TimeoutError(f"no {event} within {self.timeout} s")
            self.events.append(json.loads(self.ws.recv(timeout=remaining)))

    def close(self) -> None:
        self.ws.close()


def _devtools_port(profile: Path, process: subprocess.Popen, timeout: float) -> int:
    marker = profile / "DevToolsActivePort"
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if marker.is_file() and marker.read_text().strip():
            return int(marker.read_text().splitlines()[0])
        if process.poll() is not None:
            raise RuntimeError(f"the browser exited with code {process.returncode} before opening DevTools")
        time.sleep(0.1)
    raise TimeoutError(f"the browser did not open its DevTools port within {timeout} s")


def _page_socket(port: int, timeout: float) -> str:
    opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))   # localhost, never a proxy
    deadline = time.monotonic() + timeout
    while True:
        with opener.open(f"http://127.0.0.1:{port}/json/list", timeout=timeout) as response:
            pages = [t for t in json.load(response) if t.get("type") == "page"]
        if pages:
            return pages[0]["webSocketDebuggerUrl"]
        if time.monotonic() > deadline:
            raise TimeoutError("the browser opened no page")
        time.sleep(0.1)


def _errors(events: list[dict]) -> list[str]:
    out = []
    for event in events:
        method, params = event.get("method"), event.get("params", {})
        if method == "Runtime.exceptionThrown":
            details = params.get("exceptionDetails", {})
            out.append("exception: " + (details.get("exception", {}).get("description") or details.get("text", "")))
        elif method == "Runtime.consoleAPICalled" and params.get("type") in ("error", "assert"):
            out.append("console." + params["type"] + ": " +
                       " ".join(str(a.get("value", a.get("description", ""))) for a in params.get("args", [])))
        elif method == "Log.entryAdded" and params.get("entry", {}).get("level") == "error":
            entry = params["entry"]
            out.append(f"log: {entry.get('text', '')} {entry.get('url', '')}".strip())
        elif method == "Network.loadingFailed" and not params.get("canceled"):
            out.append(f"network: {params.get('errorText', '')} ({params.get('type', '')})")
    return out


_IMAGES_JS = ("JSON.stringify(Array.from(document.images).map(i => [i.alt || i.src.slice(0, 40), "
              "i.complete && i.naturalWidth > 0]))")


def render_check(html: str | Path, screenshot: str | Path | None = None, width: int = 1280,
                 height: int = 900, timeout: float = 60.0, browser: str | None = None) -> RenderCheck:
    """Load ``html`` (a file) in headless Chromium; collect console errors and undecodable images;
    save a full-page PNG screenshot to ``screenshot`` (height capped at 16000 px)."""
    browser = browser or find_browser()
    if browser is None:
        raise FileNotFoundError("no Chromium browser on PATH (install Debian's 'chromium' package)")
    url = Path(html).resolve().as_uri()
    with tempfile.TemporaryDirectory(prefix="fusebench-chromium-") as profile:
        process = subprocess.Popen([browser, *FLAGS, f"--user-data-dir={profile}",
                                    f"--window-size={width},{height}", "about:blank"],
                                   stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        try:
            port = _devtools_port(Path(profile), process, timeout)
            cdp = _CDP(_page_socket(port, timeout), timeout)
            try:
                return _inspect(cdp, url, screenshot, width, height)
            finally:
                cdp.close()
        finally:
            process.terminate()
            try:
                process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()


def _inspect(cdp: _CDP, url: str, screenshot, width: int, height: int) -> RenderCheck:
    for domain in ("Page", "Runtime", "Log", "Network"):
        cdp.call(f"{domain}.enable")
    cdp.call("Emulation.setDeviceMetricsOverride", width=width, height=height, deviceScaleFactor=1, mobile=False)
    cdp.call("Page.navigate", url=url)
    cdp.wait_for("Page.loadEventFired")
    images = json.loads(cdp.call("Runtime.evaluate", expression=_IMAGES_JS, returnByValue=True)["result"]["value"])
    title = cdp.call("Runtime.evaluate", expression="document.title", returnByValue=True)["result"].get("value", "")
    metrics = cdp.call("Page.getLayoutMetrics")
    size = metrics.get("cssContentSize") or metrics["contentSize"]
    page_height = int(size["height"])
    result = RenderCheck(_errors(cdp.events), len(images), [name for name, ok in images if not ok], title,
                         page_height)
    if screenshot is not None:
        clip = {"x": 0, "y": 0, "width": width, "height": min(page_height, 16000), "scale": 1}
        shot = cdp.call("Page.captureScreenshot", format="png", captureBeyondViewport=True, clip=clip)
        result.screenshot = write_bytes(Path(screenshot), base64.b64decode(shot["data"]))
    result.console_errors = _errors(cdp.events)            # events that arrived while evaluating
    return result
