"""report.html opened in a real browser (headless Chromium from Debian's ``chromium`` package).

Fails (does not skip) under ``CI=true`` when no Chromium is installed (.ci/run installs it).
"""
from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest

from pipeline.imageio import read_image
from pipeline.report import build_report
from _browser import find_browser, render_check
from test_report import synthesise


@pytest.fixture(scope="module")
def browser() -> str:
    path = find_browser()
    if path is None:
        message = "headless Chromium is required (apt-get install chromium)"
        if os.environ.get("CI"):
            pytest.fail(message)
        pytest.skip(message)
    return path


def test_report_renders_without_console_errors(tmp_path, browser):
    params = synthesise(tmp_path)
    build_report(params, tmp_path)
    html = tmp_path / "results/report/report.html"
    shot = Path(os.environ.get("FUSEBENCH_SCREENSHOT_DIR", tmp_path)) / "report_screenshot.png"
    result = render_check(html, shot, browser=browser)
    assert result.console_errors == []
    assert result.images >= 6 and result.broken_images == []
    assert result.title.startswith("FuseBench report")
    image = read_image(shot, "rgb")
    assert image.shape[1] == 1280 and image.shape[0] == min(result.page_height, 16000) > 2000
    assert image.std() > 20                       # rendered content, not a blank page
    assert np.mean(image > 250) > 0.3             # mostly the white page background


def test_render_check_reports_errors_and_broken_images(tmp_path, browser):
    """The checker itself: a page with a script error, a console.error and a missing image."""
    page = tmp_path / "bad.html"
    page.write_text('<!DOCTYPE html><html><head><title>bad</title></head><body><img src="gone.png" alt="gone">'
                    '<script>console.error("boom"); notDefined();</script></body></html>')
    result = render_check(page, browser=browser)
    text = " | ".join(result.console_errors)
    assert "boom" in text and "notDefined" in text and "ERR_FILE_NOT_FOUND" in text
    assert result.broken_images == ["gone"] and not result.ok
