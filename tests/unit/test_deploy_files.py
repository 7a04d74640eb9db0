"""The files in deploy/ against the code: every environment variable they set is one the
code reads, every command is a `coupons` subcommand, our image is the one the Dockerfile
builds, other images are pinned, every metric the alerts and the Grafana dashboard query
is one the parts export, and Prometheus' own `promtool` accepts the shipped configuration
and holds each alert to its rule tests (deploy/prometheus/alerts_test.yml)."""

import ast
import importlib
import json
import re
import secrets
import shutil
import subprocess
import tomllib
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

import pytest
import yaml
from prometheus_client import REGISTRY

from cli.main import subcommands
from runtime.http import BOUNDS
from runtime.settings import Settings

ROOT = Path(__file__).resolve().parents[2]
DEPLOY = ROOT / "deploy"
VERSION = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["version"]
OUR_IMAGE = f"coupons:{VERSION}"


class Recording(Mapping[str, str]):
    """An environment that remembers every name the code asks it for."""

    def __init__(self, values: dict[str, str]) -> None:
        self.known = values
        self.asked: set[str] = set()

    def __getitem__(self, name: str) -> str:
        self.asked.add(name)
        return self.known[name]

    def get(self, name: str, default: Any = None) -> Any:
        self.asked.add(name)
        return self.known.get(name, default)

    def __contains__(self, name: object) -> bool:
        self.asked.add(str(name))
        return name in self.known

    def __iter__(self) -> Iterator[str]:
        return iter(self.known)

    def __len__(self) -> int:
        return len(self.known)


def read_by_settings(env: dict[str, str]) -> set[str]:
    """Names Settings.from_env asks for, given these values (secrets made real)."""
    made_real = {
        name: (secrets.token_urlsafe(40) if "REPLACE" in value and "SECRET" in name else value)
        for name, value in env.items()
    }
    recording = Recording(made_real)
    Settings.from_env(recording)  # and the settings are accepted, in production mode too
    return recording.asked


def instructions() -> list[tuple[str, str]]:
    """The Dockerfile's instructions in order, (keyword, arguments); a line ending in `\\`
    goes on on the next."""
    text = (ROOT / "Dockerfile").read_text().replace("\\\n", " ")
    lines = [line.strip() for line in text.splitlines()]
    return [
        (word.upper(), rest.strip())
        for word, _, rest in (line.partition(" ") for line in lines)
        if word and not word.startswith("#")
    ]


def dockerfile() -> dict[str, list[str]]:
    found: dict[str, list[str]] = {}
    for word, rest in instructions():
        found.setdefault(word, []).append(rest)
    return found


def image_env() -> dict[str, str]:
    pairs = " ".join(dockerfile()["ENV"]).split()
    return dict(pair.split("=", 1) for pair in pairs)


def env_file(path: Path) -> dict[str, str]:
    lines = [ln for ln in path.read_text().splitlines() if ln and not ln.startswith("#")]
    return dict(ln.split("=", 1) for ln in lines)


def test_the_dockerfile_builds_our_package_and_runs_the_coupons_command() -> None:
    found = dockerfile()
    scripts = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["scripts"]
    assert json.loads(found["ENTRYPOINT"][0]) == ["coupons"] and "coupons" in scripts
    assert set(json.loads(found["CMD"][0])) <= subcommands()
    for copy in found["COPY"]:
        *sources, _ = copy.split()
        assert all((ROOT / source).exists() for source in sources), copy
    assert image_env()["COUPONS_ENV"] == "production"


def packages() -> set[str]:
    """The top-level packages `pip install .` installs (pyproject's packages.find)."""
    setuptools = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]
    return {pattern.rstrip("*") for pattern in setuptools["packages"]["find"]["include"]}


def imported(package: str) -> set[str]:
    """The top-level names a package's modules import, at the top or inside a function."""
    found: set[str] = set()
    for path in (ROOT / package).rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Import):
                found |= {alias.name.partition(".")[0] for alias in node.names}
            elif isinstance(node, ast.ImportFrom) and node.module and not node.level:
                found.add(node.module.partition(".")[0])
    return found


def test_the_image_copies_and_installs_every_package_the_parts_import() -> None:
    ours = {path.name for path in ROOT.iterdir() if (path / "__init__.py").is_file()}
    installed = packages()
    needed = {name for package in installed for name in imported(package)} & ours
    assert needed <= installed, f"pyproject.toml does not install {needed - installed}"
    copies = {tuple(copy.rstrip("/").split()) for copy in dockerfile()["COPY"]}
    uncopied = {name for name in installed if (name, name) not in copies}  # to WORKDIR/name
    assert not uncopied, f"the Dockerfile does not copy {uncopied} (COPY name name)"


def compose_services() -> dict[str, dict[str, Any]]:
    services: dict[str, dict[str, Any]] = yaml.safe_load((DEPLOY / "compose.yaml").read_text())[
        "services"
    ]
    return services


def test_compose_sets_only_what_the_code_reads_and_runs_real_subcommands() -> None:
    ours = {n: s for n, s in compose_services().items() if s.get("image") == OUR_IMAGE}
    assert set(ours) == {"migrate", "allocator", "notifier", "gateway"}
    for name, service in ours.items():
        assert service["build"]["dockerfile"] == "Dockerfile"
        assert set(service["command"]) <= subcommands(), name
        env = {**image_env()}
        for file in service["env_file"]:
            env.update(env_file(DEPLOY / f"{file}.example"))
        env.update(service.get("environment", {}))
        unread = set(env) - read_by_settings(env)
        assert not unread, f"{name} sets {unread}, which the code never reads"


def test_compose_runs_kafka_in_kraft_mode_postgres_prometheus_and_grafana() -> None:
    services = compose_services()
    # Allocators in a group of more than one: a dead one's partitions move by themselves.
    allocator = services["allocator"]
    assert allocator["deploy"]["replicas"] > 1
    assert "ALLOCATOR_PARTITIONS" not in allocator.get("environment", {})
    kafka = services["kafka"]["environment"]
    assert kafka["KAFKA_PROCESS_ROLES"] == "broker,controller"  # KRaft: no ZooKeeper
    assert {"kafka", "postgres", "prometheus", "grafana"} <= set(services)
    assert services["gateway"]["deploy"]["replicas"] > 1


def k8s_documents(folder: str = "k8s") -> list[dict[str, Any]]:
    """The manifests `kubectl apply -f deploy/<folder>` applies (not its subfolders)."""
    documents = []
    for path in sorted((DEPLOY / folder).glob("*.yaml")):
        documents += [d for d in yaml.safe_load_all(path.read_text()) if d]
    return documents


def containers(folder: str = "k8s") -> Iterator[tuple[str, dict[str, Any]]]:
    for document in k8s_documents(folder):
        spec = document.get("spec", {})
        template = spec.get("template") or spec.get("jobTemplate", {}).get("spec", {}).get(
            "template"
        )
        for container in (template or {}).get("spec", {}).get("containers", []):
            yield document["metadata"]["name"], container


@pytest.mark.parametrize(
    ("folder", "parts"),
    [
        ("k8s", ["allocator", "coupons-migrate", "gateway", "notifier"]),
        ("k8s/static", ["allocator"]),
    ],
)
def test_kubernetes_sets_only_what_the_code_reads_and_runs_real_subcommands(
    folder: str, parts: list[str]
) -> None:
    by_kind = {(d["kind"], d["metadata"]["name"]): d for d in k8s_documents()}
    config = by_kind[("ConfigMap", "coupons-config")]["data"]
    secret = by_kind[("Secret", "coupons-secrets")]["stringData"]
    seen = []
    for name, container in containers(folder):
        seen.append(name)
        assert container["image"] == OUR_IMAGE and set(container["args"]) <= subcommands()
        env = {**image_env()}
        for source in container.get("envFrom", []):
            env.update(config if "configMapRef" in source else secret)
        for variable in container.get("env", []):
            env[variable["name"]] = variable.get("value", "0")  # from the downward API
        unread = set(env) - read_by_settings(env)
        assert not unread, f"{name} sets {unread}, which the code never reads"
    assert sorted(seen) == parts


def allocator_env(document: dict[str, Any]) -> set[str]:
    (container,) = document["spec"]["template"]["spec"]["containers"]
    return {variable["name"] for variable in container.get("env", [])}


def test_kubernetes_runs_allocators_in_a_group_or_one_per_partition_and_scales_gateways() -> None:
    by_kind = {(d["kind"], d["metadata"]["name"]): d for d in k8s_documents()}
    partitions = int(by_kind[("ConfigMap", "coupons-config")]["data"]["COUPONS_COMMAND_PARTITIONS"])
    # The default: a group of more than one, so a dead pod's partitions move by themselves,
    # and a disruption budget that keeps one while nodes are drained.
    group = by_kind[("Deployment", "allocator")]
    assert group["spec"]["replicas"] > 1 and "ALLOCATOR_PARTITIONS" not in allocator_env(group)
    assert by_kind[("PodDisruptionBudget", "allocator")]["spec"]["minAvailable"] >= 1
    # The static alternative: pod N owns partition N.
    (static,) = [d for d in k8s_documents("k8s/static") if d["kind"] == "StatefulSet"]
    assert static["spec"]["replicas"] == partitions
    assert "ALLOCATOR_PARTITIONS" in allocator_env(static)
    scaler = by_kind[("HorizontalPodAutoscaler", "gateway")]["spec"]
    assert (scaler["scaleTargetRef"]["kind"], scaler["scaleTargetRef"]["name"]) == (
        "Deployment", "gateway"
    )  # fmt: skip
    assert ("Deployment", "gateway") in by_kind and scaler["maxReplicas"] > scaler["minReplicas"]


def other_images() -> Iterator[str]:
    for service in compose_services().values():
        if service.get("image") != OUR_IMAGE:
            yield service["image"]


@pytest.mark.parametrize("image", sorted(set(other_images())))
def test_other_images_are_pinned_to_a_version(image: str) -> None:
    name, _, tag = image.partition(":")
    assert name and tag and tag != "latest" and re.match(r"v?\d", tag), image


def exported_metrics() -> set[str]:
    """Every series name the parts can export (their modules register on import; a bound's
    gauge, once its part has the bound)."""
    for part in ("gateway.app", "allocator.app", "notifier.app", "runtime.http"):
        importlib.import_module(part)
    suffixes = {
        "counter": ("_total",),
        "histogram": ("_bucket", "_count", "_sum"),
        "info": ("_info",),
        "gauge": ("",),
    }
    return {
        family.name + suffix
        for family in REGISTRY.collect()
        for suffix in suffixes.get(family.type, ("",))
    } | {bound.name for bound in BOUNDS}


def queries() -> Iterator[tuple[str, str]]:
    rules = yaml.safe_load((DEPLOY / "prometheus" / "alerts.yml").read_text())
    for group in rules["groups"]:
        for rule in group["rules"]:
            yield rule["alert"], rule["expr"]
    board = json.loads((DEPLOY / "grafana" / "dashboards" / "coupons.json").read_text())
    for panel in board["panels"]:
        for target in panel["targets"]:
            yield panel["title"], target["expr"]


def test_alerts_and_dashboard_query_only_metrics_the_parts_export() -> None:
    exported = exported_metrics()
    used = {
        (where, name)
        for where, expr in queries()
        for name in re.findall(r"\b((?:coupons|process)_[a-z0-9_]+)\b", expr)
    }
    assert len(used) > 20
    missing = {(where, name) for where, name in used if name not in exported}
    assert not missing, missing


def test_every_alert_has_a_runbook_section() -> None:
    runbook = (ROOT / "docs" / "runbook.md").read_text()
    anchors = {line[4:].strip().lower() for line in runbook.splitlines() if line.startswith("### ")}
    rules = yaml.safe_load((DEPLOY / "prometheus" / "alerts.yml").read_text())
    for rule in rules["groups"][0]["rules"]:
        assert rule["annotations"]["runbook"] == f"docs/runbook.md#{rule['alert'].lower()}"
        assert rule["alert"].lower() in anchors
        assert rule["labels"]["severity"] in ("page", "warn")


PROMETHEUS = DEPLOY / "prometheus"
PROMTOOL_TIMEOUT_S = 60.0


def promtool(*args: str) -> str:
    """What Debian's promtool said, run in deploy/prometheus; it must succeed."""
    found = shutil.which("promtool")
    assert found, "promtool is needed: Debian's prometheus package (`make promtool`)"
    done = subprocess.run(
        [found, *args], cwd=PROMETHEUS, capture_output=True, text=True, timeout=PROMTOOL_TIMEOUT_S
    )
    assert done.returncode == 0, done.stdout + done.stderr
    return done.stdout


def test_promtool_accepts_the_shipped_configuration_as_it_is() -> None:
    said = promtool("check", "config", "prometheus.yml")
    assert "1 rule files found" in said and "8 rules found" in said, said


def test_each_alert_fires_and_stays_quiet_as_its_rule_tests_say() -> None:
    said = promtool("test", "rules", "alerts_test.yml")
    assert "SUCCESS" in said, said
    rules = yaml.safe_load((PROMETHEUS / "alerts.yml").read_text())
    alerts = {rule["alert"] for group in rules["groups"] for rule in group["rules"]}
    tests = yaml.safe_load((PROMETHEUS / "alerts_test.yml").read_text())["tests"]
    cases = [case for test in tests for case in test["alert_rule_test"]]
    firing = {case["alertname"] for case in cases if case["exp_alerts"]}
    quiet = {case["alertname"] for case in cases if not case["exp_alerts"]}
    assert firing == alerts and quiet == alerts, (alerts - firing, alerts - quiet)
