"""`coupons …` as an analyst runs it: in a project folder where `coupons dev` left its
settings file (deploy/local.py), with none of the stack's variables in the environment."""

import os
import subprocess
import sys
from pathlib import Path

from deploy import local
from tests.support.stack import Stack

RUN_TIMEOUT_S = 180


def stack_folder(stack: Stack, folder: Path, **changed: str) -> Path:
    """A project folder holding the settings file `coupons dev` would write for `stack`
    (with `changed` values instead, to break it on purpose)."""
    local.write(folder / local.DATA_DIR, {**stack.env, "COUPONS_URL": stack.gateway_url, **changed})
    return folder


def coupons_in(folder: Path, *args: str) -> tuple[int, str, str]:
    """Exit status, standard output and standard error of `coupons ARGS` run in `folder`."""
    env = {k: v for k, v in os.environ.items() if k not in local.SAYS and k != "COUPONS_STACK_FILE"}
    argv = [sys.executable, "-m", "cli", *args]
    done = subprocess.run(argv, cwd=folder, env=env, capture_output=True, text=True,
                          timeout=RUN_TIMEOUT_S)  # fmt: skip
    return done.returncode, done.stdout, done.stderr
