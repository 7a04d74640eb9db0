"""Files a test keeps for people to look at (screenshots, plots): `test-artifacts/`, or
$COUPONS_ARTIFACTS; and the browser the browser tests drive."""

import os
import shutil
from pathlib import Path

ARTIFACTS = Path(os.environ.get("COUPONS_ARTIFACTS", "test-artifacts"))


def artifact(name: str) -> Path:
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    return ARTIFACTS / name


def chromium() -> str:
    """Debian's chromium, which Playwright drives through executable_path."""
    path = os.environ.get("COUPONS_CHROMIUM") or shutil.which("chromium")
    assert path, "no chromium: `make test` installs Debian's package (make browser)"
    return path
