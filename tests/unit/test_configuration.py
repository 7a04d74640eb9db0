"""docs/configuration.md is what the settings' declarations say, and says every variable
the code reads from an environment: a new setting cannot go undocumented."""

import re
from pathlib import Path

from deploy import configuration

ROOT = Path(__file__).resolve().parents[2]
PACKAGES = ("schemas", "runtime", "gateway", "allocator", "notifier", "deploy", "bench", "cli")
# NAME read as env.get("NAME"), env["NAME"], os.environ.get("NAME") or declared.
READ = re.compile(
    r'(?:env|environ)(?:\.get\(|\[)\s*"([A-Z][A-Z0-9_]*)"|variable\(\s*"([A-Z0-9_]+)"'
)
# Names kept in constants and read through them.
CONSTANTS = re.compile(r'^[A-Z_]+ = "((?:COUPONS|PROMETHEUS)_[A-Z0-9_]+)"$', re.MULTILINE)


def test_the_file_is_what_the_declarations_say() -> None:
    written = (ROOT / "docs" / "configuration.md").read_text()
    assert written == configuration.document(), (
        "docs/configuration.md differs from the settings' declarations: "
        "run `make configuration` (python -m deploy.configuration > docs/configuration.md)"
    )


def test_every_setting_says_what_it_means() -> None:
    for name, default, meaning in [*configuration.rows(), *configuration.TOOLS]:
        assert meaning.strip(), f"{name}: give variable(...) its meaning"
        assert default.strip(), name


def test_every_variable_the_code_reads_is_documented() -> None:
    documented = {name for name, _, _ in [*configuration.rows(), *configuration.TOOLS]}
    read: set[str] = set()
    for package in PACKAGES:
        for source in (ROOT / package).rglob("*.py"):
            text = source.read_text()
            read |= {a or b for a, b in READ.findall(text)}
            read |= set(CONSTANTS.findall(text))
    missing = read - documented - set(configuration.NOT_SETTINGS)
    assert not missing, f"read from the environment, not in docs/configuration.md: {missing}"
    assert "ALLOCATOR_PARTITIONS" in read and "HTTP_BODY_S" in read  # the scan sees both kinds
