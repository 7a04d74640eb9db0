"""`pytest --backend=containers` where no Docker engine answers: one line saying so, and
the run stops before any test, rather than a traceback or a hang."""

import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def test_the_containers_backend_says_in_one_line_that_no_engine_answers(tmp_path: Path) -> None:
    env = {**os.environ, "DOCKER_HOST": f"unix://{tmp_path}/no-engine.sock"}
    # Its own --basetemp: by default pytest would first sweep the older runs' folders (with
    # their databases and broker logs) out of the shared one, 20 s of this test's 26.
    argv = [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider",
            f"--basetemp={tmp_path / 'inner'}", "--backend=containers",
            "tests/integration/test_migrations.py"]  # fmt: skip
    done = subprocess.run(argv, cwd=ROOT, env=env, capture_output=True, text=True, timeout=120)
    said = [line for line in done.stdout.splitlines() if "Docker engine" in line]
    assert done.returncode == 4, done.stdout + done.stderr
    assert len(said) == 1 and "embedded backend (the default) needs none" in said[0]
    assert "Traceback" not in done.stdout + done.stderr and "passed" not in done.stdout
