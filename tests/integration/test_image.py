"""The image the Dockerfile builds, as near as a machine without a Docker engine gets: what
its COPY lines copy, installed by its `pip install` into a fresh virtual environment, and
every part started from that environment's `coupons` (the image's ENTRYPOINT) with the
image's ENV, outside the repository, on the test broker and PostgreSQL: each ready, its
files served, and a claim granted. An instruction this test does not understand fails it."""

import asyncio
import fnmatch
import json
import os
import posixpath
import shlex
import shutil
import signal
import subprocess
import sys
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import NoReturn

import aiohttp
import pytest

from deploy.embedded import spawn
from deploy.stack import Infra, Part, http_ready, start_part
from runtime.db import migrations
from tests.support.client import claim, create_coupon, poll_ticket
from tests.support.stack import Stack, launched_stack
from tests.unit.test_deploy_files import ROOT, instructions, packages

pytestmark = pytest.mark.integration

VENV_S_MAX = 120.0
# Every dependency downloaded (pip's cache is used when the machine keeps one): 40-50 s
# here, and four minutes while other work loaded both cores.
INSTALL_S_MAX = 420.0
COMMAND_S_MAX = 60.0  # `coupons migrate`, and a look at where the packages were installed
# Instructions understood and deliberately not applied, and why.
NOT_APPLIED = {
    "USER": "the parts run as this machine's user",
    "EXPOSE": "the ports are the test stack's free ones",
    "CMD": "each part is named when started",
}
# RUN commands understood beside `pip install`, not run: they change the image's system.
NOT_RUN = {"useradd"}
SHELL_OPERATORS = {";", "|", "||", "&", ">", ">>", "<"}
# Kept out of the test's runs: the image's build does not keep pip's cache, this test does.
PIP_OPTIONS_IMAGE_ONLY = {"--no-cache-dir"}
# Files the parts read from their installed packages at run time, asked for over HTTP.
SERVED = [
    ("gateway", "/"),  # gateway/web/index.html
    ("gateway", "/app/app.js"),  # gateway/web/
    ("gateway", "/openapi.json"),  # gateway/openapi.yaml
    ("gateway", "/docs/assets/swagger-ui.css"),  # the swagger-ui-py package's
    ("notifier", "/openapi.json"),  # notifier/openapi.yaml
    ("notifier", "/dashboard"),  # notifier/dashboard.html
]
# Where each installed package's module lives, to show nothing comes from the checkout.
WHERE = "import importlib, sys\nfor n in sys.argv[1:]: print(importlib.import_module(n).__file__)"


@dataclass
class Copy:
    sources: list[str]  # in the build context (the repository)
    destination: str  # absolute, in the image
    into_folder: bool  # the destination is a folder the sources go into


@dataclass
class Image:
    """The Dockerfile, understood."""

    copies: list[Copy] = field(default_factory=list)
    installs: list[tuple[list[str], str]] = field(default_factory=list)  # pip's args, folder
    env: dict[str, str] = field(default_factory=dict)
    entrypoint: list[str] = field(default_factory=list)
    workdir: str = "/"  # where the parts run


def not_understood(word: str, rest: str, why: str) -> NoReturn:
    pytest.fail(f"Dockerfile: `{word} {rest}`: {why}; this test does not understand it")


def read_image() -> Image:
    image = Image()
    for word, rest in instructions():
        workdir = image.workdir
        if word == "FROM":
            if not rest.startswith("python:"):
                not_understood(word, rest, "not a python image (the test uses a venv)")
        elif word == "WORKDIR":
            image.workdir = posixpath.join(workdir, rest)
        elif word == "COPY":
            if rest.startswith(("-", "[")) or any(c in rest for c in "*?$"):
                not_understood(word, rest, "options, the JSON form, wildcards or variables")
            *sources, destination = rest.split()
            into_folder = destination.endswith("/") or len(sources) > 1
            image.copies.append(Copy(sources, posixpath.join(workdir, destination), into_folder))
        elif word == "RUN":
            for command in rest.split("&&"):
                argv = shlex.split(command)
                if set(argv) & SHELL_OPERATORS:
                    not_understood(word, rest, "shell operators other than &&")
                if argv[:2] == ["pip", "install"]:
                    image.installs.append((argv[2:], workdir))
                elif argv[0] not in NOT_RUN:
                    not_understood(word, rest, f"the command {argv[0]}")
        elif word == "ENV":
            pairs = shlex.split(rest)
            if not all("=" in pair for pair in pairs):
                not_understood(word, rest, "not NAME=value pairs")
            image.env.update(dict(pair.split("=", 1) for pair in pairs))
        elif word == "ENTRYPOINT":
            if not rest.startswith("["):
                not_understood(word, rest, "the shell form")
            image.entrypoint = json.loads(rest)
        elif word not in NOT_APPLIED:
            not_understood(word, rest, "an instruction")
    assert image.installs and image.entrypoint, "the Dockerfile installs or runs nothing"
    return image


def copy_context(image: Image, root: Path) -> None:
    """Into `root` (the image's /), what each COPY copies from the build context: a file as
    itself, a folder's contents, as `docker build .` would, less what .dockerignore names."""
    ignored = dockerignore()
    for copy in image.copies:
        target = root / copy.destination.lstrip("/")
        for source in copy.sources:
            path = ROOT / source
            assert path.exists(), f"COPY {source}: no such file in the build context"
            if path.is_dir():
                shutil.copytree(path, target, dirs_exist_ok=True, ignore=ignored)
            elif not ignored(str(path.parent), [path.name]):
                into = target / path.name if copy.into_folder else target
                into.parent.mkdir(parents=True, exist_ok=True)
                shutil.copy2(path, into)


def dockerignore() -> Callable[[str, list[str]], set[str]]:
    """.dockerignore's patterns as copytree's `ignore`: a path relative to the context,
    matched whole, `**/` for any folders before it (the forms the file uses; `!` and
    other forms are refused)."""
    patterns = [
        line.strip()
        for line in (ROOT / ".dockerignore").read_text().splitlines()
        if line.strip() and not line.startswith("#")
    ]
    for pattern in patterns:
        if pattern.startswith("!") or "**" in pattern.removeprefix("**/"):
            not_understood(".dockerignore", pattern, "only paths, globs and a leading **/")

    def matches(relative: str) -> bool:
        name = relative.rsplit("/", 1)[-1]
        return any(
            fnmatch.fnmatchcase(*((name, p[3:]) if p.startswith("**/") else (relative, p)))
            for p in patterns
        )  # fmt: skip

    def ignored(folder: str, names: list[str]) -> set[str]:
        base = Path(folder).relative_to(ROOT)
        return {n for n in names if matches((base / n).as_posix())}

    return ignored


def run(name: str, argv: list[str], cwd: Path, logs: Path, timeout_s: float, **env: str) -> str:
    """`argv` to its end (killed, with all it started, after `timeout_s`); what it said."""
    logs.mkdir(parents=True, exist_ok=True)
    environ = {**os.environ, **env}
    process = spawn(name, argv, logs / f"{name}.log", signal.SIGTERM, cwd=cwd, env=environ)
    try:
        code = process.popen.wait(timeout=timeout_s)
    except subprocess.TimeoutExpired:
        code = None
    finally:
        process.kill()  # nothing if it ended
    said = process.log_path.read_text()
    if code != 0:
        how = f"exited with {code}" if code is not None else f"not done after {timeout_s}s"
        pytest.fail(f"`{shlex.join(argv)}` in {cwd} {how}:\n{said[-3000:]}")
    return said


def install(image: Image, root: Path, venv: Path, logs: Path) -> None:
    """The image's installs, run in a fresh virtual environment."""
    run("venv", [sys.executable, "-m", "venv", str(venv)], root, logs, VENV_S_MAX)
    for args, folder in image.installs:
        kept = [arg for arg in args if arg not in PIP_OPTIONS_IMAGE_ONLY]
        argv = [str(venv / "bin" / "python"), "-m", "pip", "install", *kept]
        run("pip", argv, root / folder.lstrip("/"), logs, INSTALL_S_MAX)


def installed(root: Path, venv: Path, logs: Path) -> dict[str, Path]:
    """The folder each of our packages is installed in, all in the virtual environment."""
    # -I: neither the folder it runs in nor PYTHONPATH on the path, only the venv's own.
    names = sorted(packages())
    argv = [str(venv / "bin" / "python"), "-I", "-c", WHERE, *names]
    said = run("where", argv, root, logs, COMMAND_S_MAX).split()
    found = dict(zip(names, map(Path, said), strict=True))
    outside = {name: path for name, path in found.items() if not path.is_relative_to(venv)}
    assert not outside, f"imported from outside the virtual environment: {outside}"
    return {name: path.parent for name, path in found.items()}


def assert_installed_beside(packages: dict[str, Path], folder: str) -> None:
    """Every file of a data folder in a package (`deploy/kafka`) installed with it."""
    package = folder.partition("/")[0]
    files = [path.relative_to(ROOT / package) for path in (ROOT / folder).iterdir()]
    missing = [str(name) for name in files if not (packages[package] / name).is_file()]
    assert not missing, f"not installed with {package}: {missing}"


def production_secrets() -> dict[str, str]:
    """What a real deployment sets: long random secrets, each its own (hex: no placeholder
    word such as "test" can appear in one, which production refuses)."""
    names = ("COUPONS_JWT_SECRET", "COUPONS_CODE_SECRET", "COUPONS_TICKET_SECRET")
    return {name: os.urandom(32).hex() for name in names}


def migrated(coupons: list[str], workdir: Path, logs: Path, env: dict[str, str]) -> list[str]:
    """The installed migrations, down to nothing and up again: what `coupons migrate` ran."""
    down = [*coupons, "migrate", "--target", "0"]
    run("migrate-down", down, workdir, logs, COMMAND_S_MAX, **env)
    said = run("migrate", [*coupons, "migrate"], workdir, logs, COMMAND_S_MAX, **env)
    return [line for line in said.splitlines() if line.startswith("up ")]


async def files_served_and_a_claim_granted(stack: Stack) -> None:
    async with aiohttp.ClientSession() as session:
        for name, path in SERVED:
            part = stack.gateway if name == "gateway" else stack.notifier
            assert part is not None
            async with session.get(part.url + path) as response:
                assert response.status == 200, f"{name} {path}: {response.status}"
        coupon = await create_coupon(session, stack, 1)
        answer = await claim(session, stack, coupon["id"], "ann")
        assert answer.status == 201, answer.body
        assert stack.notifier is not None
        ticket = f"{stack.notifier.url}/v1/tickets/{answer.body['ticket']}"
        decided = await poll_ticket(session, ticket)
    assert (decided["status"], decided["grant"]["user_id"]) == ("granted", "ann")


@pytest.mark.timeout(VENV_S_MAX + INSTALL_S_MAX + 240)
@pytest.mark.only_on("embedded")  # the install is the same whatever the broker: checked once
def test_the_image_installs_and_its_parts_grant_a_claim(
    infra: Infra, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    image = read_image()
    root, venv, logs = tmp_path / "image", tmp_path / "venv", tmp_path / "logs"
    copy_context(image, root)
    monkeypatch.delenv("PYTHONPATH", raising=False)  # nothing from the checkout
    install(image, root, venv, logs)
    workdir = root / image.workdir.lstrip("/")  # the parts run where they do in the image
    monkeypatch.chdir(workdir)
    env = {
        **image.env,
        # Not the image's 0.0.0.0, every interface of its container: here, of the machine.
        "COUPONS_HOST": "127.0.0.1",
        **production_secrets(),
    }
    stack = launched_stack(infra, "image", None, env, launch=False)
    coupons = [str(venv / "bin" / image.entrypoint[0]), *image.entrypoint[1:]]
    ran = migrated(coupons, workdir, logs, stack.env)  # the image's entry point, first run
    assert ran == [f"up {name}" for _, name, *_ in migrations()]
    assert_installed_beside(installed(root, venv, logs), "deploy/kafka")  # the broker's files

    def start(name: str) -> Part:
        port = int(stack.env[f"{name.upper()}_PORT"])
        return start_part(name, stack.env, port, stack.log_dir, wait=False, coupons=coupons)

    try:
        stack.gateway = start("gateway")
        stack.allocators.append(start("allocator"))
        stack.notifier = start("notifier")
        stack.wait()
        assert all(http_ready(part.url) for part in stack.parts)
        asyncio.run(files_served_and_a_claim_granted(stack))
    finally:
        stack.stop()
