"""One typed settings object per process, parsed from environment variables.

Tests build settings with the same parser from a dict, so what they run is what runs.
"""

import hashlib
import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import tzinfo
from zoneinfo import ZoneInfo


class SettingsError(ValueError):
    pass


@dataclass(frozen=True)
class Settings:
    kafka_bootstrap_servers: str
    database_url: str
    jwt_secret: str = field(repr=False)
    code_secret: str = field(repr=False)
    topic_prefix: str = ""
    commands_partitions: int = 4
    day_zone_name: str = "UTC"
    host: str = "127.0.0.1"
    gateway_port: int = 8080
    notifier_port: int = 8081
    allocator_port: int = 8082
    notifier_public_url: str = "http://127.0.0.1:8081"
    allocator_partitions: tuple[int, ...] | None = None
    allocator_id: str = "allocator"
    gateway_id: str = ""
    gateway_workers: int = 1
    gateway_reuse_port: bool = False
    event_loop: str = "uvloop"
    kafka_fetch_wait_ms: int = 10
    batch_records_max: int = 2000
    claim_wait_s_default: float = 2.0
    claim_wait_s_max: float = 10.0
    produce_timeout_s: float = 5.0
    db_pool_size_max: int = 10

    @property
    def day_zone(self) -> tzinfo:
        return ZoneInfo(self.day_zone_name)

    @property
    def ticket_secret(self) -> bytes:
        return hashlib.sha256(b"tickets\0" + self.jwt_secret.encode()).digest()

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> "Settings":
        env = os.environ if env is None else env
        missing = [
            name
            for name in ("KAFKA_BOOTSTRAP_SERVERS", "DATABASE_URL", "COUPONS_JWT_SECRET")
            if not env.get(name)
        ]
        if missing:
            raise SettingsError(f"missing environment variables: {', '.join(missing)}")
        jwt_secret = env["COUPONS_JWT_SECRET"]
        partitions = env.get("ALLOCATOR_PARTITIONS", "").strip()
        try:
            settings = cls(
                kafka_bootstrap_servers=env["KAFKA_BOOTSTRAP_SERVERS"],
                database_url=env["DATABASE_URL"],
                jwt_secret=jwt_secret,
                code_secret=env.get("COUPONS_CODE_SECRET") or jwt_secret,
                topic_prefix=env.get("COUPONS_TOPIC_PREFIX", ""),
                commands_partitions=int(env.get("COUPONS_COMMAND_PARTITIONS", "4")),
                day_zone_name=env.get("COUPONS_DAY_TIMEZONE", "UTC"),
                host=env.get("COUPONS_HOST", "127.0.0.1"),
                gateway_port=int(env.get("GATEWAY_PORT", "8080")),
                notifier_port=int(env.get("NOTIFIER_PORT", "8081")),
                allocator_port=int(env.get("ALLOCATOR_PORT", "8082")),
                notifier_public_url=env.get(
                    "NOTIFIER_PUBLIC_URL", f"http://127.0.0.1:{env.get('NOTIFIER_PORT', '8081')}"
                ).rstrip("/"),
                allocator_partitions=(
                    tuple(int(p) for p in partitions.split(",")) if partitions else None
                ),
                allocator_id=env.get("ALLOCATOR_ID", f"allocator-{os.getpid()}"),
                gateway_id=env.get("GATEWAY_ID", ""),
                gateway_workers=int(env.get("GATEWAY_WORKERS", "1")),
                gateway_reuse_port=env.get("GATEWAY_REUSE_PORT", "") == "1",
                event_loop=env.get("COUPONS_EVENT_LOOP", "uvloop"),
                kafka_fetch_wait_ms=int(env.get("KAFKA_FETCH_WAIT_MS", "10")),
                batch_records_max=int(env.get("ALLOCATOR_BATCH_RECORDS_MAX", "2000")),
                claim_wait_s_default=float(env.get("CLAIM_WAIT_S_DEFAULT", "2")),
                claim_wait_s_max=float(env.get("CLAIM_WAIT_S_MAX", "10")),
                db_pool_size_max=int(env.get("DB_POOL_SIZE_MAX", "10")),
            )
            settings.day_zone  # noqa: B018 - fail at start on an unknown zone
            if settings.event_loop not in ("uvloop", "asyncio"):
                raise ValueError(f"COUPONS_EVENT_LOOP: {settings.event_loop!r}")
            if settings.gateway_workers < 1:
                raise ValueError("GATEWAY_WORKERS must be at least 1")
        except (ValueError, KeyError) as error:
            raise SettingsError(f"bad setting: {error}") from error
        return settings
