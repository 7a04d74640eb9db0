"""Settings read from the environment: what an allocator owns, and the web app's sign-in."""

import asyncio

import pytest

from allocator.app import run
from runtime.settings import Settings, SettingsError

BASE = {
    "KAFKA_BOOTSTRAP_SERVERS": "127.0.0.1:9092",
    "DATABASE_URL": "postgresql://127.0.0.1/coupons",
    "COUPONS_JWT_SECRET": "a-development-secret",
    "COUPONS_COMMAND_PARTITIONS": "6",
}


def test_without_partitions_an_allocator_joins_its_prefixs_group() -> None:
    settings = Settings.from_env({**BASE, "COUPONS_TOPIC_PREFIX": "staging."})
    assert settings.allocator_partitions is None
    assert settings.allocator_group == "staging.coupons-allocators"
    named = Settings.from_env({**BASE, "ALLOCATOR_GROUP": "blue"})
    assert named.allocator_group == "blue"


@pytest.mark.parametrize(
    ("given", "owned"), [("all", (0, 1, 2, 3, 4, 5)), ("2", (2,)), ("0,3", (0, 3))]
)
def test_given_partitions_are_owned_statically(given: str, owned: tuple[int, ...]) -> None:
    assert Settings.from_env({**BASE, "ALLOCATOR_PARTITIONS": given}).allocator_partitions == owned


def test_a_static_member_needs_a_name_it_keeps() -> None:
    """The group knows a static member by ALLOCATOR_ID; one made up from the process id
    would be a stranger after every restart. Only the allocator refuses: every part reads
    the same settings."""
    named = Settings.from_env({**BASE, "ALLOCATOR_STATIC_MEMBER": "1", "ALLOCATOR_ID": "a-0"})
    assert (named.allocator_static_member, named.allocator_id_given) == (True, True)
    unnamed = Settings.from_env({**BASE, "ALLOCATOR_STATIC_MEMBER": "1"})
    with pytest.raises(SettingsError, match="ALLOCATOR_STATIC_MEMBER needs ALLOCATOR_ID"):
        asyncio.run(run(unnamed, asyncio.Event()))


@pytest.mark.parametrize(
    ("env", "said"),
    [
        ({"ALLOCATOR_PARTITIONS": "every"}, "ALLOCATOR_PARTITIONS: 'every' is not all or a list"),
        ({"ALLOCATOR_SESSION_TIMEOUT_MS": "500"}, "at least 1000"),
    ],
)
def test_a_bad_ownership_setting_is_refused_clearly(env: dict[str, str], said: str) -> None:
    with pytest.raises(SettingsError, match=said):
        Settings.from_env({**BASE, **env})


def test_the_web_apps_provider_sign_in_needs_the_provider_named() -> None:
    provider = {"COUPONS_JWT_SECRET": "", "COUPONS_JWT_JWKS_URL": "https://id.test/keys",
                "COUPONS_CODE_SECRET": "c" * 32, "COUPONS_TICKET_SECRET": "t" * 32}  # fmt: skip
    with pytest.raises(SettingsError, match="COUPONS_JWT_ISSUER"):
        Settings.from_env({**BASE, **provider, "COUPONS_OIDC_CLIENT_ID": "web"})
    with pytest.raises(SettingsError, match="COUPONS_JWT_JWKS_URL"):
        Settings.from_env(
            {**BASE, "COUPONS_OIDC_CLIENT_ID": "web", "COUPONS_JWT_ISSUER": "https://id.test"}
        )
    named = Settings.from_env(
        {
            **BASE,
            **provider,
            "COUPONS_OIDC_CLIENT_ID": "web",
            "COUPONS_JWT_ISSUER": "https://id.test",
        }
    )
    assert (named.oidc_client_id, named.oidc_scope) == ("web", "openid profile")
