"""The OpenAPI documents describe exactly the routes the parts serve."""

import pytest

from gateway.app import ROUTES as GATEWAY_ROUTES
from notifier.app import ROUTES as NOTIFIER_ROUTES
from runtime.docs import OPS_PATHS, _ruled, document
from schemas.codes import ALPHABETS
from schemas.storable import MESSAGE_CHARS_MAX, SPEC_RULES

METHODS = {"get", "post", "put", "patch", "delete"}


@pytest.mark.parametrize(("package", "routes"), [("gateway", GATEWAY_ROUTES),
                                                 ("notifier", NOTIFIER_ROUTES)])  # fmt: skip
def test_every_route_is_documented_and_every_documented_route_is_served(
    package: str, routes: list[tuple[str, str, object]]
) -> None:
    spec = document(package)
    assert spec["openapi"].startswith("3.1")
    documented = {
        (method.upper(), path)
        for path, item in spec["paths"].items()
        for method in item
        if method in METHODS
    }
    served = {(method, path) for method, path, _ in routes}
    served |= {(m.upper(), p) for p, item in OPS_PATHS.items() for m in item}
    assert served - documented == set(), "served but not in the document"
    assert documented - served == set(), "in the document but not served"


@pytest.mark.parametrize("package", ["gateway", "notifier"])
def test_every_reference_resolves(package: str) -> None:
    spec = document(package)
    refs: list[str] = []

    def walk(node: object) -> None:
        if isinstance(node, dict):
            refs.extend(v for k, v in node.items() if k == "$ref")
            for value in node.values():
                walk(value)
        elif isinstance(node, list):
            for value in node:
                walk(value)

    walk(spec)
    assert refs
    for ref in refs:
        target: object = spec
        for part in ref.removeprefix("#/").split("/"):
            assert isinstance(target, dict) and part in target, f"{ref} does not resolve"
            target = target[part]


BOUNDS = ("minLength", "maxLength", "minimum", "maximum", "minItems", "maxItems")


def test_a_new_coupons_bounds_are_the_rules() -> None:
    """Each field's bounds in the document are the rule's the log holds it to (issue 26:
    message 1000 in the document and 500 in the rules; count minimum 1 against 0)."""
    fields = document("gateway")["components"]["schemas"]["NewCoupon"]["properties"]
    names = {"daily_limit": "daily_rule"}
    for name, rule in SPEC_RULES.items():
        if name in ("start_ms", "expiry_ms"):
            continue  # sent as RFC 3339 times, held to the calendar's years by requests.time_ms
        field = next(f for n, f in fields.items() if names.get(n, n) == name)
        assert {k: field.get(k) for k in BOUNDS} == {k: rule.schema.get(k) for k in BOUNDS}, name
    assert fields["code_alphabet"]["enum"] == sorted(ALPHABETS)


def test_a_bound_beside_a_rule_is_refused() -> None:
    """A bound written beside `x-rule` would say the rule twice (and drift from it)."""
    with pytest.raises(AssertionError, match="bounds written twice"):
        _ruled({"x-rule": "coupon.message", "maxLength": 1000})
    assert _ruled({"x-rule": "coupon.message"})["maxLength"] == MESSAGE_CHARS_MAX
