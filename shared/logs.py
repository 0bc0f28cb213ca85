"""Structured logging: one JSON line per event, context bound per message.

Services call ``configure_logging`` once at start and log through
``get_logger``. Per-message context (request id, subject, model, project)
is bound with ``bind_context`` and cleared when the message is done, so it
is not repeated in every call.
"""

from __future__ import annotations

import logging
import sys
from typing import Any

import orjson
import structlog

bind_context = structlog.contextvars.bind_contextvars
clear_context = structlog.contextvars.clear_contextvars


def _dumps(value: Any, **_: Any) -> str:
    return orjson.dumps(value, default=str).decode()


def configure_logging(service: str, level: str = "INFO") -> None:
    """Send this process's log events as JSON lines to stderr."""
    numeric = logging.getLevelNamesMapping().get(level.upper(), logging.INFO)
    structlog.configure(
        processors=[
            structlog.contextvars.merge_contextvars,
            structlog.processors.add_log_level,
            structlog.processors.TimeStamper(fmt="iso", utc=True, key="ts"),
            structlog.processors.format_exc_info,
            structlog.processors.JSONRenderer(serializer=_dumps),
        ],
        wrapper_class=structlog.make_filtering_bound_logger(numeric),
        logger_factory=structlog.WriteLoggerFactory(file=sys.stderr),
        cache_logger_on_first_use=True,
    )
    structlog.contextvars.clear_contextvars()
    # Libraries log through the standard library; keep theirs quiet and JSON.
    logging.basicConfig(level=logging.WARNING, stream=sys.stderr, force=True)
    for noisy in ("faststream", "nats", "httpx", "httpcore"):
        logging.getLogger(noisy).setLevel(logging.WARNING)
    structlog.get_logger().bind(service=service)
    structlog.contextvars.bind_contextvars(service=service)


def get_logger(name: str | None = None) -> Any:
    """Return a structured logger; ``name`` is the module, for filtering."""
    return structlog.get_logger(name) if name else structlog.get_logger()
