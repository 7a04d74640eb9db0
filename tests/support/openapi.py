"""Real answers held to the OpenAPI documents the parts serve, strictly: every object an
answer holds may carry only the fields its schema declares (`additionalProperties: false`
imposed wherever the document leaves it open), so an undeclared field fails as a missing
or mistyped one does. What generated clients read is then what the parts send."""

import copy
import re
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import quote

import jsonschema_rs
import orjson

METHODS = ("get", "put", "post", "delete", "patch")


def strict(document: dict[str, Any]) -> dict[str, Any]:
    """The document with every object schema closed to fields it does not declare. An
    `allOf` is closed as a whole (`unevaluatedProperties`), its parts left open (a part
    closed on its own would refuse the fields the other parts declare), each referenced
    part copied in, so that the schema it names stays closed where it is used alone."""
    closed = copy.deepcopy(document)
    stack: list[Any] = [closed]
    while stack:
        node = stack.pop()
        if isinstance(node, list):
            stack.extend(node)
            continue
        if not isinstance(node, dict):
            continue
        if "allOf" in node:
            node["allOf"] = [_opened(_followed(document, part)) for part in node["allOf"]]
            node.setdefault("unevaluatedProperties", False)
        elif _object(node) and "additionalProperties" not in node:
            if not node.pop(OPEN, False):
                node["additionalProperties"] = False
        stack.extend(node.values())
    return closed


OPEN = "x-left-open"  # a part of an allOf, closed by the whole


def _object(schema: dict[str, Any]) -> bool:
    """An object's schema: one that declares fields, or says it is an object and declares
    none (closed, it holds none: every field an answer carries is declared)."""
    return "properties" in schema or schema.get("type") == "object"


def _followed(document: dict[str, Any], schema: dict[str, Any]) -> dict[str, Any]:
    while "$ref" in schema:
        schema = _at(document, schema["$ref"])
    return copy.deepcopy(schema)


def _opened(schema: dict[str, Any]) -> dict[str, Any]:
    return {**schema, OPEN: True} if "properties" in schema else schema


def _at(document: dict[str, Any], ref: str) -> Any:
    found: Any = document
    for part in ref.removeprefix("#/").split("/"):
        found = found[part.replace("~1", "/").replace("~0", "~")]
    return found


def _pointer(*parts: str) -> str:
    """A JSON pointer as a URI fragment (RFC 6901: `{` and `}` percent-encoded)."""
    return "#/" + "/".join(quote(p.replace("~", "~0").replace("/", "~1"), safe="~") for p in parts)


@dataclass
class Operation:
    method: str
    template: str
    pattern: re.Pattern[str]
    spec: dict[str, Any]

    @property
    def name(self) -> str:
        return str(self.spec.get("operationId") or f"{self.method.upper()} {self.template}")


@dataclass
class Conformance:
    """One part's document; `check` holds an answer to it and notes what was answered."""

    document: dict[str, Any]
    seen: set[tuple[str, int]] = field(default_factory=set)

    def __post_init__(self) -> None:
        self.closed = strict(self.document)
        self.operations = [
            Operation(method, template, _route(template), spec)
            for template, item in self.document["paths"].items()
            for method, spec in item.items()
            if method in METHODS
        ]
        # Literal paths before templated ones: /v1/users/me/grants is not a grant id.
        self.operations.sort(key=lambda op: op.template.count("{"))

    def operation(self, method: str, path: str) -> Operation:
        found = [o for o in self.operations if o.method == method and o.pattern.fullmatch(path)]
        assert found, f"{method.upper()} {path} is in no operation of the document"
        return found[0]

    def check(self, method: str, path: str, status: int, content_type: str, body: bytes) -> str:
        """Hold one answer to its operation's declared response; the operation's name."""
        op = self.operation(method.lower(), path)
        responses = op.spec["responses"]
        code = str(status)
        assert code in responses, f"{op.name} answered {status}, which it does not declare"
        response, where = self._resolved(responses[code], ("paths", op.template, op.method,
                                                            "responses", code))  # fmt: skip
        media = content_type.split(";")[0].strip()
        declared = response.get("content", {})
        if declared or body:
            assert media in declared, f"{op.name} {status}: {media} is not declared ({declared})"
        schema = declared.get(media, {}).get("schema")
        if schema is not None and media.endswith("json"):
            ref = _pointer(*where, "content", media, "schema")
            validator = jsonschema_rs.Draft202012Validator({**self.closed, "$ref": ref})
            instance = orjson.loads(body)
            errors = [
                f"{list(e.instance_path)}: {e.message}" for e in validator.iter_errors(instance)
            ]
            assert not errors, f"{op.name} {status} breaks its schema: {errors}; {instance}"
        self.seen.add((op.name, status))
        return op.name

    def _resolved(
        self, response: dict[str, Any], where: tuple[str, ...]
    ) -> tuple[dict[str, Any], tuple[str, ...]]:
        while "$ref" in response:
            ref = response["$ref"]
            where = tuple(p.replace("~1", "/").replace("~0", "~")
                          for p in ref.removeprefix("#/").split("/"))  # fmt: skip
            response = _at(self.document, ref)
        return response, where

    def unanswered(self) -> list[str]:
        """Operations never answered with a success (2xx)."""
        answered = {name for name, status in self.seen if status < 300}
        return sorted({op.name for op in self.operations} - answered)


def _route(template: str) -> re.Pattern[str]:
    return re.compile(re.sub(r"\\\{[^}]+\\\}", "[^/]+", re.escape(template)))
