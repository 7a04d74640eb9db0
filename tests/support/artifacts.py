"""Files a test keeps for people to look at (screenshots, plots): `test-artifacts/`, or
$COUPONS_ARTIFACTS; and the browser the browser tests drive."""

import os
import shutil
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

from playwright.async_api import Browser, async_playwright

ARTIFACTS = Path(os.environ.get("COUPONS_ARTIFACTS", "test-artifacts"))


def artifact(name: str) -> Path:
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    return ARTIFACTS / name


def chromium() -> str:
    """Debian's chromium, which Playwright drives through executable_path."""
    path = os.environ.get("COUPONS_CHROMIUM") or shutil.which("chromium")
    assert path, "no chromium: `make test` installs Debian's package (make browser)"
    return path


@asynccontextmanager
async def launched() -> AsyncIterator[Browser]:
    """Chromium, headless, closed when the block ends."""
    root = ["--no-sandbox"] if os.geteuid() == 0 else []  # chromium's sandbox refuses root
    async with async_playwright() as playwright:
        browser = await playwright.chromium.launch(executable_path=chromium(), args=root)
        try:
            yield browser
        finally:
            await browser.close()
