"""Schemathesis against the gateway's and the notifier's own OpenAPI documents, on the
real stack: generated requests, valid and not, must never get a 5xx, and every answer must
match the document (status, content type, headers, body)."""

import os
import re
import subprocess
import sys
from pathlib import Path

import aiohttp
import pytest

from tests.support.stack import Stack

pytestmark = [pytest.mark.integration, pytest.mark.shares_stack]

CHECKS = ",".join(
    [
        "not_a_server_error",
        "status_code_conformance",
        "content_type_conformance",
        "response_headers_conformance",
        "response_schema_conformance",
        "negative_data_rejection",
    ]
)
EXAMPLES_PER_OPERATION = 30  # bounded: CI time
ROOT = Path(__file__).resolve().parents[2]


def fuzz(url: str, token: str, *extra: str) -> subprocess.CompletedProcess[str]:
    command = Path(sys.executable).parent / "schemathesis"
    # One worker: hypothesis parses lambdas with ast.parse, which CPython 3.11 before 3.11.8
    # can fail from several threads at once ("AST constructor recursion depth mismatch",
    # python/cpython#106905); schemathesis' workers are threads.
    argv = [
        str(command), "run", f"{url}/openapi.json", "--checks", CHECKS,
        "--max-examples", str(EXAMPLES_PER_OPERATION), "--seed", "20261121",
        "--header", f"Authorization: Bearer {token}", "--request-timeout", "15",
        "--workers", "1", "--no-color", *extra,
    ]  # fmt: skip
    hooks = {"SCHEMATHESIS_HOOKS": "tests.support.fuzz_hooks", "PYTHONPATH": str(ROOT)}
    done = subprocess.run(
        argv, capture_output=True, text=True, timeout=900, check=False, env={**os.environ, **hooks}
    )
    print(done.stdout[-3000:])
    return done


def test_the_gateway_holds_to_its_document(stack: Stack) -> None:
    done = fuzz(stack.gateway_url, stack.token("fuzzer", admin=True))
    assert done.returncode == 0, done.stdout[-6000:] + done.stderr[-2000:]


def test_the_notifier_holds_to_its_document(stack: Stack) -> None:
    assert stack.notifier is not None
    # Live streams never end by design: they are tested in test_events and test_dashboard.
    never_end = ("myEvents", "couponEvents", "dashboardEvents")
    streams = [f"--exclude-operation-id={operation}" for operation in never_end]
    done = fuzz(stack.notifier.url, stack.token("fuzzer"), *streams)
    assert done.returncode == 0, done.stdout[-6000:] + done.stderr[-2000:]


async def test_the_docs_page_loads_swagger_ui_from_the_part_itself(stack: Stack) -> None:
    async with aiohttp.ClientSession() as http:
        async with http.get(f"{stack.gateway_url}/docs") as page:
            html = await page.text()
            assert page.status == 200 and page.content_type == "text/html"
        assets = re.findall(r'(?:src|href)="([^"]+)"', html)
        assert len(assets) == 2 and all(a.startswith("/docs/assets/") for a in assets)  # no CDN
        for asset in assets:
            async with http.get(f"{stack.gateway_url}{asset}") as response:
                body = await response.read()
                assert response.status == 200 and len(body) > 1000, asset
