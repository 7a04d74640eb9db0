"""The documents name tests and files that exist: a test renamed or moved is a failure here,
not a stale line in docs/."""

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
NAMED = re.compile(r"`(tests/[a-z_/]+\.py)(?:::([a-z0-9_]+))?`")


def test_every_test_docs_testing_names_exists() -> None:
    named = NAMED.findall((ROOT / "docs" / "testing.md").read_text())
    assert len(named) > 20
    for path, name in named:
        source = ROOT / path
        assert source.is_file(), path
        if name:
            # A test may be a method: the behaviour suite's scenarios are.
            assert re.search(rf"^ *(async )?def {name}\(", source.read_text(), re.MULTILINE), (
                f"{path}::{name}"
            )


def test_every_document_the_readme_links_exists() -> None:
    readme = (ROOT / "README.md").read_text()
    linked = re.findall(r"\]\((docs/[^)]+)\)", readme)
    assert "docs/configuration.md" in linked and "docs/testing.md" in linked
    for path in linked:
        assert (ROOT / path).is_file(), path
