"""One typed settings object per process, parsed from environment variables.

Tests build settings with the same parser from a dict, so what they run is what runs.
"""

import hashlib
import os
import socket
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import tzinfo
from zoneinfo import ZoneInfo

from runtime.auth import LEEWAY_S_DEFAULT, Verifier
from runtime.connections import ConnectionBounds
from runtime.environment import read, variable
from runtime.errors import BadInput
from runtime.jwks import KeySet
from runtime.limits import Limits, parse_networks

# The command log's partitions unless COUPONS_COMMAND_PARTITIONS says (and every test stack's).
COMMAND_PARTITIONS = 4


class SettingsError(BadInput):
    """A setting missing, malformed, or at odds with another: the process does not start."""


@dataclass(frozen=True)
class Settings:
    kafka_bootstrap_servers: str
    database_url: str
    jwt: Verifier
    code_secret: str = field(repr=False)
    ticket_key: str = field(repr=False, default="")
    environment: str = variable(
        "COUPONS_ENV",
        "development",
        "`production` refuses to start unless the JWT, code and ticket secrets are each set, 32+ "
        "characters, not placeholders and all different; else `development`",
    )
    topic_prefix: str = variable("COUPONS_TOPIC_PREFIX", "", "prefix of every topic name")
    commands_partitions: int = variable(
        "COUPONS_COMMAND_PARTITIONS",
        COMMAND_PARTITIONS,
        "partitions of `coupon.commands` when created",
    )
    day_zone_name: str = variable(
        "COUPONS_DAY_TIMEZONE", "UTC", "time zone of the one-per-day rule"
    )
    host: str = variable("COUPONS_HOST", "127.0.0.1", "the address each part listens on")
    gateway_port: int = variable("GATEWAY_PORT", 8080, "the gateway's HTTP port")
    notifier_port: int = variable(
        "NOTIFIER_PORT", 8081, "the notifier's HTTP port (and the default `NOTIFIER_PUBLIC_URL`'s)"
    )
    allocator_port: int = variable(
        "ALLOCATOR_PORT", 8082, "the allocator's HTTP port (`/partitions`, `/metrics`)"
    )
    notifier_public_url: str = "http://127.0.0.1:8081"  # NOTIFIER_PUBLIC_URL, or its port's
    # ALLOCATOR_PARTITIONS: "0,1" or "all" (static ownership); unset: a consumer group
    allocator_partitions: tuple[int, ...] | None = None
    allocator_group: str = "coupons-allocators"  # ALLOCATOR_GROUP, or the prefix's own
    allocator_session_timeout_ms: int = variable(
        "ALLOCATOR_SESSION_TIMEOUT_MS",
        6000,
        "a member silent this long is dropped from the allocators' group and its partitions move "
        "(heartbeats every sixth of it); at least 1000",
    )
    allocator_id: str = "allocator"  # ALLOCATOR_ID, or one with the host name and process id
    # A static member of the group (KIP-345) under ALLOCATOR_ID: started again under the same
    # id within the session, it takes its partitions back at once instead of after the
    # session; but stopping never leaves the group, so its partitions wait out the session.
    allocator_static_member: bool = variable(
        "ALLOCATOR_STATIC_MEMBER",
        False,
        "`1`: a static member of the group under `ALLOCATOR_ID` (KIP-345): killed and started "
        "again under the same id, it takes its partitions back at once instead of after a session;"
        " but a static member never leaves, so when stopped for good its partitions wait out the "
        "session. Needs `ALLOCATOR_ID` set. For allocators restarted in place under a stable name "
        "(a crash-looping container in its pod); not for rolling updates that rename pods",
    )
    allocator_id_given: bool = False  # ALLOCATOR_ID set, not made up from the process id
    gateway_id: str = variable(
        "GATEWAY_ID",
        "",
        "names the gateway's reply topic (workers add `-w<n>`); empty: `gw-<pid>-<random>`",
    )
    gateway_workers: int = variable(
        "GATEWAY_WORKERS", 1, "gateway processes sharing the port (`coupons gateway --workers N`)"
    )
    gateway_reuse_port: bool = variable(
        "GATEWAY_REUSE_PORT",
        False,
        "listen with SO_REUSEPORT beside other processes (what `--workers` sets)",
    )
    event_loop: str = variable("COUPONS_EVENT_LOOP", "uvloop", "`uvloop` or `asyncio`")
    # How long the broker may hold a consumer's fetch when nothing is new. Apache Kafka
    # answers as soon as a record arrives, so a wait costs no latency there and keeps idle
    # readers quiet (10 fetches a second each). It is 100, not Kafka's 500: a reader that
    # must know it reached the log's end (the notifier's tail read for a pending ticket)
    # learns it from an empty fetch, so waits that long. Tansu holds every fetch until the
    # wait runs out: stacks on Tansu set 10 (deploy/stack.py's TANSU_ENV).
    kafka_fetch_wait_ms: int = variable(
        "KAFKA_FETCH_WAIT_MS",
        100,
        "how long the broker may hold a consumer's fetch when nothing is new: Apache Kafka answers"
        " as soon as a record arrives; a reader learns it reached the log's end from an empty "
        "fetch, so not Kafka's 500; Tansu answers only when the wait runs out, so stacks on Tansu "
        "(`coupons dev`, the bench, the tests) set 10",
    )
    # The topics the parts create: copies of each partition, and how many must have a
    # write before it is acknowledged (acks=all). 1 and 1 for a one-node broker; on a
    # cluster, 3 and 2: one node may die and nothing acknowledged is lost.
    kafka_replication_factor: int = variable(
        "KAFKA_REPLICATION_FACTOR",
        1,
        "copies of each partition of the topics the parts create (a topic that exists is left as "
        "it is); 3 in `deploy/compose.yaml` and `deploy/k8s`",
    )
    kafka_min_insync_replicas: int = variable(
        "KAFKA_MIN_INSYNC_REPLICAS",
        1,
        "the topics' `min.insync.replicas`: with `acks=all`, how many copies a write needs before "
        "it is acknowledged; 2 with three nodes",
    )
    # Producers that the broker deduplicates on a retry and keeps in order: Apache Kafka
    # has them; Tansu refuses them (InitProducerId fails), so it is off unless set.
    kafka_idempotence: bool = variable(
        "KAFKA_ENABLE_IDEMPOTENCE",
        False,
        "idempotent producers (a retried produce never written twice); Tansu refuses them "
        "(`InitProducerId` fails), Apache Kafka has them; on in `deploy/k8s`",
    )
    batch_records_max: int = variable("ALLOCATOR_BATCH_RECORDS_MAX", 2000, "records per batch")
    forget_idle_s: float = variable(
        "ALLOCATOR_FORGET_IDLE_S",
        60.0,
        "coupons (with nothing timed and nobody in line) and people no command named for this long"
        " are dropped from memory and read back from PostgreSQL when named again",
    )
    claim_wait_s_default: float = variable(
        "CLAIM_WAIT_S_DEFAULT",
        2.0,
        "how long a request waits for its decision without `Prefer: wait`",
    )
    claim_wait_s_max: float = variable(
        "CLAIM_WAIT_S_MAX",
        10.0,
        "how long a request waits for its decision at most, with `Prefer: wait`",
    )
    produce_timeout_s: float = 5.0
    db_pool_size_max: int = variable("DB_POOL_SIZE_MAX", 10, "PostgreSQL connections per process")
    limits: Limits = field(default_factory=Limits)
    connections: ConnectionBounds = field(default_factory=ConnectionBounds)
    produce_queue_max: int = variable(
        "GATEWAY_PRODUCE_QUEUE_MAX",
        20_000,
        "commands waiting for the broker in one gateway; past it, `503`",
    )
    # COUPONS_WEB_ORIGINS: where the web app is served from, allowed to read the notifier
    # from a browser; unset: any origin in development, none in production.
    web_origins: tuple[str, ...] = ()
    # The web app's sign-in at an OpenID Connect provider (authorization code with PKCE):
    # its client id there; the provider is COUPONS_JWT_ISSUER, its keys COUPONS_JWT_JWKS_URL.
    oidc_client_id: str = variable(
        "COUPONS_OIDC_CLIENT_ID",
        "",
        "the web app's client id at the OpenID Connect provider `COUPONS_JWT_ISSUER` names:"
        " people sign in there (authorization code with PKCE; needs `COUPONS_JWT_JWKS_URL`;"
        ' docs/runbook.md, "Tokens from an identity provider"); empty: no provider sign-in',
    )
    oidc_scope: str = variable(
        "COUPONS_OIDC_SCOPE", "openid profile", "the scopes the web app asks the provider for"
    )

    @property
    def day_zone(self) -> tzinfo:
        return ZoneInfo(self.day_zone_name)

    @property
    def ticket_secret(self) -> bytes:
        return hashlib.sha256(b"tickets\0" + self.ticket_key.encode()).digest()

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> "Settings":
        env = os.environ if env is None else env
        missing = [n for n in ("KAFKA_BOOTSTRAP_SERVERS", "DATABASE_URL") if not env.get(n)]
        if missing:
            raise SettingsError(f"missing environment variables: {', '.join(missing)}")
        try:
            verifier = _verifier(env)
        except ValueError as error:
            raise SettingsError(f"bad setting: {error}") from error
        secrets = _secrets(env)
        partitions = env.get("ALLOCATOR_PARTITIONS", "").strip()
        notifier_port = env.get("NOTIFIER_PORT", "8081")
        try:
            settings = read(
                cls,
                env,
                kafka_bootstrap_servers=env["KAFKA_BOOTSTRAP_SERVERS"],
                database_url=env["DATABASE_URL"],
                jwt=verifier,
                code_secret=secrets["COUPONS_CODE_SECRET"],
                ticket_key=secrets["COUPONS_TICKET_SECRET"],
                notifier_public_url=env.get(
                    "NOTIFIER_PUBLIC_URL", f"http://127.0.0.1:{notifier_port}"
                ).rstrip("/"),
                allocator_partitions=_partitions(partitions, env),
                web_origins=_origins(env),
                allocator_group=env.get("ALLOCATOR_GROUP")
                or env.get("COUPONS_TOPIC_PREFIX", "") + "coupons-allocators",
                allocator_id=env.get(
                    "ALLOCATOR_ID", f"allocator-{socket.gethostname()}-{os.getpid()}"
                ),
                allocator_id_given="ALLOCATOR_ID" in env,
                limits=read(
                    Limits,
                    env,
                    trusted_proxies=parse_networks(env.get("COUPONS_TRUSTED_PROXIES", "")),
                ),
                connections=read(ConnectionBounds, env),
            )
            settings.day_zone  # noqa: B018 - fail at start on an unknown zone
            if settings.event_loop not in ("uvloop", "asyncio"):
                raise ValueError(f"COUPONS_EVENT_LOOP: {settings.event_loop!r}")
            if settings.allocator_session_timeout_ms < 1000:
                raise ValueError("ALLOCATOR_SESSION_TIMEOUT_MS must be at least 1000")
            if not 1 <= settings.kafka_min_insync_replicas <= settings.kafka_replication_factor:
                raise ValueError(
                    "KAFKA_MIN_INSYNC_REPLICAS must be at least 1 and at most"
                    " KAFKA_REPLICATION_FACTOR"
                )
            if settings.gateway_workers < 1:
                raise ValueError("GATEWAY_WORKERS must be at least 1")
            if settings.oidc_client_id and not (verifier.issuer and verifier.keys):
                raise ValueError(
                    "COUPONS_OIDC_CLIENT_ID needs the provider: COUPONS_JWT_ISSUER (where its"
                    " discovery document is) and COUPONS_JWT_JWKS_URL (its keys)"
                )
        except (ValueError, KeyError) as error:
            raise SettingsError(f"bad setting: {error}") from error
        return settings


def _origins(env: Mapping[str, str]) -> tuple[str, ...]:
    """COUPONS_WEB_ORIGINS, comma-separated; unset: any in development, none in production."""
    given = [o.strip().rstrip("/") for o in env.get("COUPONS_WEB_ORIGINS", "").split(",")]
    if any(given):
        return tuple(o for o in given if o)
    return () if env.get("COUPONS_ENV", "development") == "production" else ("*",)


def _partitions(text: str, env: Mapping[str, str]) -> tuple[int, ...] | None:
    """ALLOCATOR_PARTITIONS: the partitions owned statically, "all" of them, or None for
    a share decided by the consumer group."""
    if not text:
        return None
    if text == "all":
        return tuple(range(int(env.get("COUPONS_COMMAND_PARTITIONS", COMMAND_PARTITIONS))))
    try:
        return tuple(int(p) for p in text.split(","))
    except ValueError:
        raise ValueError(f"ALLOCATOR_PARTITIONS: {text!r} is not all or a list like 0,1") from None


PRODUCTION_SECRET_CHARS_MIN = 32
PLACEHOLDERS = (
    "secret", "replace", "changeme", "change-me", "change_me", "password", "example", "test",
)  # fmt: skip


def _public_key(env: Mapping[str, str]) -> str:
    if env.get("COUPONS_JWT_PUBLIC_KEY_FILE"):
        try:
            with open(env["COUPONS_JWT_PUBLIC_KEY_FILE"]) as file:
                return file.read()
        except OSError as error:
            raise SettingsError(f"COUPONS_JWT_PUBLIC_KEY_FILE: {error}") from error
    return env.get("COUPONS_JWT_PUBLIC_KEY", "")


def _verifier(env: Mapping[str, str]) -> Verifier:
    secret, public_key = env.get("COUPONS_JWT_SECRET", ""), _public_key(env)
    jwks_url = env.get("COUPONS_JWT_JWKS_URL", "")
    if [bool(secret), bool(public_key), bool(jwks_url)].count(True) != 1:
        raise SettingsError(
            "set exactly one of COUPONS_JWT_SECRET (HS256), COUPONS_JWT_PUBLIC_KEY or "
            "COUPONS_JWT_PUBLIC_KEY_FILE (RS256), and COUPONS_JWT_JWKS_URL (an OpenID "
            "Connect provider's keys)"
        )
    keys = None
    if jwks_url:
        if not jwks_url.startswith(("https://", "http://")):
            raise SettingsError(f"COUPONS_JWT_JWKS_URL: {jwks_url!r} is not an http(s) URL")
        keys = KeySet(jwks_url, float(env.get("COUPONS_JWT_JWKS_REFRESH_S", "300")))
    return Verifier(
        secret or public_key,
        "HS256" if secret else "RS256",
        audience=env.get("COUPONS_JWT_AUDIENCE") or None,
        issuer=env.get("COUPONS_JWT_ISSUER") or None,
        leeway_s=int(env.get("COUPONS_JWT_LEEWAY_S", str(LEEWAY_S_DEFAULT))),
        keys=keys,
    )


def _secrets(env: Mapping[str, str]) -> dict[str, str]:
    """The code and ticket secrets. In development they default to the HS256 secret; in
    production (COUPONS_ENV=production) each must be set, long, not a placeholder, and
    different from the others."""
    names = ("COUPONS_CODE_SECRET", "COUPONS_TICKET_SECRET")
    production = env.get("COUPONS_ENV", "development") == "production"
    if env.get("COUPONS_ENV", "development") not in ("development", "production"):
        raise SettingsError("COUPONS_ENV must be development or production")
    fallback = "" if production else env.get("COUPONS_JWT_SECRET", "")
    found = {name: env.get(name) or fallback for name in names}
    unset = [name for name, value in found.items() if not value]
    if unset:
        why = "in production" if production else "with a public key or a JWKS (no shared secret)"
        raise SettingsError(f"{', '.join(unset)} must be set {why}")
    if production:
        given = {**found, "COUPONS_JWT_SECRET": env.get("COUPONS_JWT_SECRET", "")}
        for name, value in given.items():
            if not value:
                continue
            if len(value) < PRODUCTION_SECRET_CHARS_MIN:
                raise SettingsError(
                    f"{name} is shorter than {PRODUCTION_SECRET_CHARS_MIN} characters"
                )
            if any(word in value.lower() for word in PLACEHOLDERS):
                raise SettingsError(f"{name} looks like a placeholder, not a secret")
        values = [v for v in given.values() if v]
        if len(set(values)) != len(values):
            raise SettingsError("production secrets must differ from each other")
    return found
