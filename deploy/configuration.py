"""docs/configuration.md, written from the settings' own declarations.

Most settings are declared where they are read, `variable(NAME, default, meaning)`
(runtime/environment.py), and listed from there. A few are read by `Settings.from_env`
itself, because each depends on another (one of three token keys, secrets that default to
the HS256 one, a group named after the topic prefix): they are listed here beside it. So
are the variables the command line and the development stack read, which no part does.
`tests/unit/test_configuration.py` holds the file to this module, and this module to every
name the code reads from an environment.

    python -m deploy.configuration > docs/configuration.md     # or: make configuration
"""

from typing import Any

from runtime.auth import LEEWAY_S_DEFAULT
from runtime.connections import ConnectionBounds
from runtime.environment import declared
from runtime.limits import Limits
from runtime.settings import COMMAND_PARTITIONS, Settings

Row = tuple[str, str, str]  # name, default as shown, meaning

# Read by Settings.from_env by hand: each depends on another variable.
READ_BY_HAND: tuple[Row, ...] = (
    ("KAFKA_BOOTSTRAP_SERVERS", "required", "broker addresses"),
    ("DATABASE_URL", "required", "PostgreSQL URL"),
    ("COUPONS_JWT_SECRET", "one of the three keys", "HS256 secret for tokens"),
    ("COUPONS_JWT_PUBLIC_KEY", "one of the three keys",
     "the issuer's RS256 public key (PEM); or `COUPONS_JWT_PUBLIC_KEY_FILE`, a file holding it"),
    ("COUPONS_JWT_PUBLIC_KEY_FILE", "one of the three keys",
     "a file holding `COUPONS_JWT_PUBLIC_KEY`"),
    ("COUPONS_JWT_JWKS_URL", "one of the three keys",
     "an OpenID Connect provider's key set (its `jwks_uri`): each token is verified with the "
     "key its `kid` names, in that key's asymmetric algorithm; a token naming a key not "
     "fetched yet (a rotation) starts one refresh and gets `503` + `Retry-After: 1`, and the "
     "retry passes; unknown keys are refused `401` without asking the provider more than "
     "once per 10 s; `/readyz` is `503` until the keys are in hand (`runtime/jwks.py`)"),
    ("COUPONS_JWT_JWKS_REFRESH_S", "300", "how often the key set is fetched anyway"),
    ("COUPONS_JWT_AUDIENCE", "not checked", "when set, tokens must carry this `aud`"),
    ("COUPONS_JWT_ISSUER", "not checked", "when set, tokens must carry this `iss`"),
    ("COUPONS_JWT_LEEWAY_S", str(LEEWAY_S_DEFAULT), "clock-skew leeway for `exp`, at most 300"),
    ("COUPONS_CODE_SECRET", "the HS256 secret",
     "key for coupon codes; keep it stable or replays differ"),
    ("COUPONS_TICKET_SECRET", "the HS256 secret", "key that signs tickets"),
    ("COUPONS_WEB_ORIGINS", "any in development, none in production",
     "origins the web app is served from, comma-separated, allowed to read the notifier's "
     "tickets and streams from a browser (CORS)"),
    ("NOTIFIER_PUBLIC_URL", "`http://127.0.0.1:$NOTIFIER_PORT`",
     "base of ticket URLs in `Location`"),
    ("ALLOCATOR_PARTITIONS", "unset: a group",
     "partitions this allocator owns statically, e.g. `0,1`, or `all` (every one of the "
     f"`COUPONS_COMMAND_PARTITIONS`, {COMMAND_PARTITIONS} unless set); unset, it is a member "
     "of the allocators' group, which shares the partitions out and moves a dead member's "
     'share to the others (docs/runbook.md, "Allocator failover")'),
    ("ALLOCATOR_GROUP", "`<COUPONS_TOPIC_PREFIX>coupons-allocators`",
     "the allocators' Kafka consumer group"),
    ("ALLOCATOR_ID", "`allocator-<host>-<pid>`",
     "the allocator's name in the partition rows (and, static, in the group)"),
    ("COUPONS_TRUSTED_PROXIES", "none",
     "proxies (CIDRs) whose `X-Forwarded-For` names the client; otherwise the header is ignored"),
)  # fmt: skip

# Read by the command line and the development stack, not by the parts.
TOOLS: tuple[Row, ...] = (
    ("COUPONS_URL", "`http://127.0.0.1:8080`",
     "the gateway the `coupons` client commands talk to (`coupons dev` writes it)"),
    ("COUPONS_TOKEN", "none", "the token the client commands send; else `--token` or `--as`"),
    ("USER", "the system's", "who the client commands act as without `--as`"),
    ("COUPONS_ALLOCATOR_URL", "written by `coupons dev`",
     "where the first allocator answers (`/partitions`, `/metrics`), for operators and "
     "scrapers; no part reads it"),
    ("COUPONS_STACK_FILE", "`.data/stack.env`",
     "the local stack's settings file, which every `coupons` command run here reads for what "
     "the environment does not say"),
    ("COUPONS_DEBUG", "unset", "set: a failing command shows its traceback, not one line"),
    ("PROMETHEUS_MULTIPROC_DIR", "set by `--workers`",
     "where gateway workers keep their metrics, so `/metrics` answers their sums "
     "(`deploy/workers.py`)"),
    ("COUPONS_KAFKA_CACHE", "`~/.cache/coupons`",
     "where Apache Kafka's jars are resolved to (`deploy/kafka_broker.py`)"),
    ("COUPONS_KAFKA_JVM_OPTS", "the server JVM's",
     "the JVM options of a one-node Apache Kafka; the test suite sets the light ones"),
)  # fmt: skip

# Read from an environment but set by our own tools for processes they start.
NOT_SETTINGS = {
    "PORT": "bench/baseline.py and bench/ceiling.py: the bench gives each its port",
}

DECLARED = (Settings, Limits, ConnectionBounds)


def shown(value: Any) -> str:
    """A default as an operator would write it."""
    if isinstance(value, bool):
        return "on" if value else "off"
    if isinstance(value, float):
        return f"{value:g}"
    return str(value) if value != "" else "empty"


def rows() -> list[Row]:
    """Every setting of the parts: the declared ones, then those read by hand."""
    found = [(name, shown(default), meaning) for cls in DECLARED
             for name, default, meaning in declared(cls)]  # fmt: skip
    return [*READ_BY_HAND, *found]


def table(entries: list[Row] | tuple[Row, ...]) -> list[str]:
    lines = ["| variable | meaning | default |", "|---|---|---|"]
    return lines + [f"| `{name}` | {meaning} | {default} |" for name, default, meaning in entries]


def document() -> str:
    lines = [
        "# Configuration",
        "",
        "<!-- Written by `python -m deploy.configuration > docs/configuration.md` (`make",
        "configuration`) from the settings' declarations; edit those, not this. -->",
        "",
        "Each part (`coupons gateway|allocator|notifier|migrate`) is configured by environment",
        "variables, parsed once at start into one typed settings object (`runtime/settings.py`,",
        "`runtime/limits.py`, `runtime/connections.py`); a value its type cannot hold, or one at",
        "odds with another, stops the process with one line naming it. Booleans are `1`, `true`",
        "or `yes`.",
        "",
        "## The parts",
        "",
        *table(rows()),
        "",
        "## The command line and the development stack",
        "",
        "Read by `coupons` commands and `coupons dev`, not by the parts:",
        "",
        *table(TOOLS),
        "",
    ]
    return "\n".join(lines)


if __name__ == "__main__":
    print(document(), end="")
