"""`{{ name }}` templates: what counts as a placeholder, what is missing, how a message is filled."""

from __future__ import annotations

import pytest

from notifq.templates import BUILTINS, missing, placeholders, render


@pytest.mark.parametrize(
    ("text", "names"),
    [
        ("Hi {{ name }}", {"name"}),
        ("{{name}}{{ _x1 }}", {"name", "_x1"}),
        ("{{ 1bad }} {{ a-b }} { {c} } {{}}", set()),  # not identifiers: left as text
        ("{{ name }} and {{ name }}", {"name"}),
        (None, set()),
    ],
)
def test_placeholders(text: str | None, names: set[str]) -> None:
    assert placeholders(text) == names


def test_placeholders_across_subject_and_body() -> None:
    assert placeholders("Hello {{ a }}", None, "{{ b }}") == {"a", "b"}


def test_missing_ignores_builtins_and_sorts() -> None:
    assert "to" in BUILTINS
    assert missing(frozenset({"z", "a", "to"}), {"b": "1"}) == ["a", "z"]
    assert missing(frozenset({"a"}), {"a": ""}) == []  # an empty value is a value
    assert missing(frozenset({"a"}), None) == ["a"]


def test_render_fills_variables_and_the_address() -> None:
    assert render("Hi {{ name }}, to {{to}}", {"name": "Ada"}, "ada@example.com") == "Hi Ada, to ada@example.com"
    assert render("{{ unknown }}", {}, "x") == "{{ unknown }}"  # checked before sending; never silently blank
    assert render(None, {"a": "b"}, "x") == ""
    assert render("no placeholders", None, "x") == "no placeholders"


def test_render_is_not_recursive() -> None:
    """A value that looks like a placeholder is inserted as text, never expanded again (no injection)."""
    assert render("{{ a }}", {"a": "{{ b }}", "b": "secret"}, "x") == "{{ b }}"
