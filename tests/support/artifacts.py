"""Files a test keeps for people to look at (screenshots, plots): `test-artifacts/`, or
$COUPONS_ARTIFACTS."""

import os
from pathlib import Path

ARTIFACTS = Path(os.environ.get("COUPONS_ARTIFACTS", "test-artifacts"))


def artifact(name: str) -> Path:
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    return ARTIFACTS / name
