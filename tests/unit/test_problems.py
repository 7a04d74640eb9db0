"""The catalogue of problems (schemas/problems.py) is the only place a problem's status
and title are written: every problem the code raises by name is in it."""

import ast
from pathlib import Path

from schemas.problems import DECIDED, PROBLEMS, slug
from schemas.reasons import DETAILS

PARTS = ("gateway", "notifier", "runtime", "allocator")
ROOT = Path(__file__).resolve().parents[2]


def _named(callables: set[str]) -> list[tuple[str, str]]:
    """(where, the name) of each call of `callables` whose first argument is a string."""
    found = []
    for part in PARTS:
        for path in sorted((ROOT / part).rglob("*.py")):
            for node in ast.walk(ast.parse(path.read_text())):
                if not isinstance(node, ast.Call) or not node.args:
                    continue
                called = node.func.id if isinstance(node.func, ast.Name) else None
                first = node.args[0]
                if called in callables and isinstance(first, ast.Constant):
                    found.append((f"{path.relative_to(ROOT)}:{node.lineno}", str(first.value)))
    return found


def test_every_problem_raised_by_name_is_in_the_catalogue() -> None:
    named = _named({"Problem", "problem"})
    assert len(named) > 30  # the walk found the code's problems
    assert [(where, name) for where, name in named if name not in PROBLEMS] == []


def test_every_refusal_raised_by_reason_is_a_reason() -> None:
    refused = _named({"Refused", "refusal"})
    assert refused
    assert [(where, reason) for where, reason in refused if reason not in DETAILS] == []


def test_a_reason_is_a_problem_of_its_own_name_with_one_status_and_title() -> None:
    for reason, kind in DECIDED.items():
        assert PROBLEMS[slug(reason)] is kind
        assert kind.status in (404, 409) and kind.title, reason
