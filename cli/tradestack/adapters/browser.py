"""Headless Chromium, wrapped once: a self-contained HTML page printed to PDF (the BC/DR report's filed form).

Chromium is Debian's (`make setup` installs it); it runs with a profile of its own that is removed after, no
sandbox (root in the lab), and nothing that reaches the network: the page it prints is a local file with no
fetched asset."""

from __future__ import annotations

import shutil
import subprocess
import tempfile
from pathlib import Path

from ..errors import EnvironmentProblem, TradestackError

BROWSERS = ("chromium", "chromium-browser", "google-chrome")


class BrowserError(TradestackError):
    """Chromium could not print the page."""


def find() -> str:
    for name in BROWSERS:
        path = shutil.which(name)
        if path:
            return path
    raise EnvironmentProblem("Chromium is not installed: run `make setup` (Debian package chromium); the report's "
                             "JSON and HTML are written without it")


def print_pdf(page: Path, pdf: Path, timeout: float = 120.0) -> Path:
    """`page` (a local HTML file) printed to `pdf`, A4, without the browser's own header and footer."""
    browser = find()
    with tempfile.TemporaryDirectory(prefix="tradestack-chromium-") as profile:
        argv = [browser, "--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
                "--disable-component-update", "--disable-sync", "--no-first-run", "--disable-extensions",
                f"--user-data-dir={profile}", "--no-pdf-header-footer", f"--print-to-pdf={pdf}",
                page.resolve().as_uri()]
        try:
            done = subprocess.run(argv, capture_output=True, text=True, timeout=timeout)
        except subprocess.TimeoutExpired:
            raise BrowserError(f"Chromium did not print {page} within {timeout:g} s") from None
    if done.returncode != 0 or not pdf.exists() or pdf.stat().st_size == 0:
        raise BrowserError(f"Chromium could not print {page} (exit {done.returncode}): {done.stderr.strip()[-500:]}")
    return pdf
