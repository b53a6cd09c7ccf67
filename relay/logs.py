"""structlog set-up: JSON lines off a terminal, console lines on one, secrets redacted.

Redaction (relay/redaction.py) happens here, once, for every event, relay's own and the
standard library logging of aiohttp, asyncio and asyncpg alike: each configured secret is
replaced wherever it appears, and so are the secret parts of relay's own URLs (chain tokens,
callback tokens, trigger ids), which are not known in advance.
"""

from __future__ import annotations

import logging
import sys
from collections.abc import Iterable
from typing import Any, TextIO

import orjson
import structlog

from relay import redaction


def _json_line(event: Any, **_: Any) -> str:
    return orjson.dumps(event, default=str).decode()


def configure(secrets: Iterable[str] = (), *, stream: TextIO | None = None,
              level: str = "info", json: bool | None = None) -> None:
    """Route structlog to `stream` (stderr); JSON unless the stream is a terminal."""
    stream = stream or sys.stderr
    as_json = not stream.isatty() if json is None else json
    renderer: Any = (structlog.processors.JSONRenderer(serializer=_json_line) if as_json
                     else structlog.dev.ConsoleRenderer(colors=False))
    global _redactor
    redactor = _redactor = redaction.Redactor(secrets)
    threshold = logging.getLevelNamesMapping()[level.upper()]
    structlog.configure(
        processors=[
            structlog.processors.add_log_level,
            structlog.processors.TimeStamper(fmt="iso", utc=True),
            structlog.processors.format_exc_info,
            redactor,
            renderer,
        ],
        wrapper_class=structlog.make_filtering_bound_logger(threshold),
        logger_factory=structlog.WriteLoggerFactory(file=stream),
    )
    _route_standard_logging(stream, redactor, renderer, max(threshold, logging.WARNING))
    global _logger
    _logger = structlog.get_logger("relay").bind()


_handler: logging.Handler | None = None
_redactor: redaction.Redactor | None = None


def remember_secrets(secrets: Iterable[str]) -> None:
    """Redact these too from now on (a reloaded config's new secrets)."""
    if _redactor is not None:
        _redactor.learn(secrets)


def _route_standard_logging(stream: TextIO, redactor: redaction.Redactor, renderer: Any,
                            level: int) -> None:
    """Lines from libraries (aiohttp, asyncio, asyncpg) through the same redaction and format:
    an exception text can carry a URL with a token in it. Only warnings and worse: relay's
    own events say what happens; the libraries speak when something is wrong."""
    global _handler
    root = logging.getLogger()
    if _handler is not None:
        root.removeHandler(_handler)
    _handler = logging.StreamHandler(stream)
    _handler.setLevel(level)
    _handler.setFormatter(structlog.stdlib.ProcessorFormatter(
        foreign_pre_chain=[
            structlog.stdlib.add_logger_name,
            structlog.processors.add_log_level,
            structlog.processors.TimeStamper(fmt="iso", utc=True),
        ],
        processors=[
            structlog.stdlib.ProcessorFormatter.remove_processors_meta,
            structlog.processors.format_exc_info,
            redactor,
            renderer,
        ],
    ))
    root.addHandler(_handler)
    if root.level > level or root.level == logging.NOTSET:
        root.setLevel(level)


_logger: Any = None


def get() -> Any:
    """relay's logger, bound once per configuration (binding per call costs ~40 µs)."""
    if _logger is None:
        configure()
    return _logger
