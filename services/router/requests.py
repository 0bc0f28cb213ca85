"""Validation of a chat request's top-level fields, naming the bad field.

The adapters translate what passes; this refuses early, before any quota is
taken, what no provider would accept.
"""

from __future__ import annotations

from typing import Any

from shared.errors import InvalidRequest

ROLES = frozenset({"system", "developer", "user", "assistant", "tool"})
EFFORTS = frozenset({"none", "minimal", "low", "medium", "high"})


def validate_chat_request(body: dict[str, Any]) -> None:
    """Raise ``InvalidRequest`` for the first malformed field."""
    messages = body.get("messages")
    if not isinstance(messages, list) or not messages:
        raise InvalidRequest(
            "messages: give a non-empty list of chat messages", field="messages"
        )
    for index, message in enumerate(messages):
        _check_message(index, message)
    _check_optional(body, "stream", bool, "true or false")
    _check_optional(body, "tools", list, "a list of function tools")
    _check_positive(body, "max_completion_tokens")
    _check_positive(body, "max_tokens")
    temperature = body.get("temperature")
    if temperature is not None and (
        not isinstance(temperature, int | float) or not 0 <= temperature <= 2
    ):
        raise InvalidRequest(
            f"temperature: expected a number from 0 to 2, got {temperature!r}",
            field="temperature",
        )
    effort = body.get("reasoning_effort")
    if effort is not None and effort not in EFFORTS:
        raise InvalidRequest(
            f"reasoning_effort: expected one of {sorted(EFFORTS)}, got {effort!r}",
            field="reasoning_effort",
        )


def _check_message(index: int, message: Any) -> None:
    field = f"messages.{index}"
    if not isinstance(message, dict):
        raise InvalidRequest(f"{field}: each message must be an object", field=field)
    role = message.get("role")
    if role not in ROLES:
        raise InvalidRequest(
            f"{field}.role: expected one of {sorted(ROLES)}, got {role!r}",
            field=f"{field}.role",
        )


def _check_optional(body: dict[str, Any], name: str, kind: type, expected: str) -> None:
    value = body.get(name)
    if value is not None and not isinstance(value, kind):
        raise InvalidRequest(f"{name}: expected {expected}, got {value!r}", field=name)


def _check_positive(body: dict[str, Any], name: str) -> None:
    value = body.get(name)
    if value is not None and (
        not isinstance(value, int) or isinstance(value, bool) or value <= 0
    ):
        raise InvalidRequest(
            f"{name}: expected a positive integer, got {value!r}", field=name
        )
