"""The local stack's settings file, so the command line finds the stack by itself.

`coupons dev` writes what it started (broker, database, topic prefix, secrets, URLs) to
`<data dir>/stack.env`, one `NAME=value` per line, readable by its owner only, and removes
it when it stops. Every analyst's and client's command run in the project folder reads it
for what its environment does not say: the environment wins. COUPONS_STACK_FILE names
another file.
"""

import os
import time
from collections.abc import MutableMapping
from pathlib import Path

from runtime.errors import BadInput

FILE_NAME = "stack.env"
DATA_DIR = ".data"
# Where the first allocator answers (/partitions, /metrics): for operators and scrapers; no
# part reads it, so a part started here takes no port from the file.
ALLOCATOR_URL = "COUPONS_ALLOCATOR_URL"
SAYS = (
    "KAFKA_BOOTSTRAP_SERVERS", "DATABASE_URL", "COUPONS_TOPIC_PREFIX",
    "COUPONS_COMMAND_PARTITIONS", "COUPONS_JWT_SECRET", "COUPONS_CODE_SECRET",
    "COUPONS_DAY_TIMEZONE", "COUPONS_URL", "NOTIFIER_PUBLIC_URL", ALLOCATOR_URL,
)  # fmt: skip


class StackFileError(BadInput):
    """The settings file named, or found, cannot be read as NAME=value lines."""


def write(data_dir: Path, env: dict[str, str]) -> Path:
    """The stack's settings, to its data folder; the file's path."""
    path = data_dir / FILE_NAME
    path.parent.mkdir(parents=True, exist_ok=True)
    started = time.strftime("%Y-%m-%d %H:%M:%S")
    lines = [f"# written by `coupons dev` (pid {os.getpid()}) at {started}; removed when it stops"]
    lines += [f"{name}={env[name]}" for name in SAYS if env.get(name)]
    path.touch(mode=0o600)
    path.write_text("\n".join(lines) + "\n")
    return path


def remove(path: Path) -> None:
    path.unlink(missing_ok=True)


def find(data_dir: str = DATA_DIR) -> Path | None:
    """The settings file a command here reads: COUPONS_STACK_FILE, or the data folder's."""
    named = os.environ.get("COUPONS_STACK_FILE")
    if named:
        if not Path(named).is_file():
            raise StackFileError(f"COUPONS_STACK_FILE names {named}, which is not a file")
        return Path(named)
    path = Path(data_dir) / FILE_NAME
    return path if path.is_file() else None


def read(path: Path) -> dict[str, str]:
    try:
        text = path.read_text()
    except OSError as error:
        raise StackFileError(f"{path}: {error.strerror or error}") from error
    values = {}
    for number, line in enumerate(text.splitlines(), 1):
        if not line.strip() or line.startswith("#"):
            continue
        name, sep, value = line.partition("=")
        if not sep or not name.strip():
            raise StackFileError(f"{path}:{number}: not NAME=value")
        values[name.strip()] = value.strip()
    return values


def apply(environ: MutableMapping[str, str], data_dir: str = DATA_DIR) -> Path | None:
    """What the settings file says, for each name the environment leaves unset; the file
    read, or None when there is none."""
    path = find(data_dir)
    if path is None:
        return None
    for name, value in read(path).items():
        environ.setdefault(name, value)
    global READ_FROM
    READ_FROM = path
    return path


READ_FROM: Path | None = None  # the settings file this process applied


def origin() -> str:
    """Where this command's settings came from, for an error message."""
    if READ_FROM is not None:
        return f" (settings from {READ_FROM}: is `coupons dev` still running?)"
    return ""
