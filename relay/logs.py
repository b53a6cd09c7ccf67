"""structlog set-up: JSON lines off a terminal, console lines on one, secrets redacted.

Redaction (relay/redaction.py) happens here, once, for every event, relay's own and the
standard library logging of aiohttp, asyncio and asyncpg alike: each configured secret is
replaced wherever it appears, and so are the secret parts of relay's own URLs (chain tokens,
callback tokens, trigger ids), which are not known in advance.
"""

from __future__ import annotations

import asyncio
import atexit
import logging
import sys
import threading
import time
from collections.abc import Iterable, MutableMapping
from datetime import UTC, datetime
from typing import Any, BinaryIO, TextIO

import orjson
import structlog

from relay import redaction


def _json_line(event: Any, **_: Any) -> str:
    return orjson.dumps(event, default=str).decode()


def _json_bytes(_logger: Any, _method: str, event: MutableMapping[str, Any]) -> bytes:
    """The line as orjson makes it, for a BytesLogger: no str in between."""
    return orjson.dumps(event, default=str)


class TurnWriter:
    """A structlog logger that writes bytes lines to `file` once per event-loop turn.

    The lines that one turn of the loop logs (a group commit answers dozens of pushes in one
    turn) go out in one write at the start of the next turn, instead of one write(2) each
    (intake: -4 µs of CPU a push). Off the loop's thread, or with no loop running, a line is
    written at once, after any held ones (the order is kept); atexit writes what is left.
    """

    def __init__(self, file: BinaryIO) -> None:
        self._file = file
        self._held: list[bytes] = []
        self._lock = threading.Lock()
        self._loop: asyncio.AbstractEventLoop | None = None
        """The loop a flush is scheduled on, while lines are held."""
        atexit.register(self.flush)

    def msg(self, message: bytes) -> None:
        try:
            loop: asyncio.AbstractEventLoop | None = asyncio.get_running_loop()
        except RuntimeError:
            loop = None
        with self._lock:
            self._held.append(message)
            if loop is None or (self._loop is not None and self._loop is not loop):
                self._write_held()
            elif self._loop is None:
                self._loop = loop
                loop.call_soon(self.flush)

    log = debug = info = warn = warning = msg
    fatal = failure = err = error = critical = exception = msg

    def flush(self) -> None:
        with self._lock:
            self._write_held()

    def _write_held(self) -> None:
        self._loop = None
        if self._held and not self._file.closed:
            lines, self._held = self._held, []
            lines.append(b"")
            self._file.write(b"\n".join(lines))
            self._file.flush()


class Stamper:
    """`timestamp`: ISO 8601 UTC with microseconds, as structlog's TimeStamper(fmt="iso",
    utc=True) writes it, at a third of its cost: the date and time of day are made once a
    second (a canonical line per request pays for this)."""

    def __init__(self) -> None:
        self._second = -1
        self._prefix = ""

    def __call__(self, _logger: Any, _method: str,
                 event: MutableMapping[str, Any]) -> MutableMapping[str, Any]:
        now = time.time()
        second = int(now)
        if second != self._second:
            self._prefix = datetime.fromtimestamp(second, UTC).strftime("%Y-%m-%dT%H:%M:%S")
            self._second = second
        event["timestamp"] = f"{self._prefix}.{int((now - second) * 1e6):06d}Z"
        return event


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
    # JSON to a file (stderr, or what it is redirected to) goes out as bytes: orjson makes
    # bytes, and a text stream would only encode them again.
    binary = getattr(stream, "buffer", None) if as_json else None
    factory: Any = (_writer_factory(binary) if binary is not None
                    else structlog.WriteLoggerFactory(file=stream))
    structlog.configure(
        processors=[
            structlog.processors.add_log_level,
            Stamper(),
            structlog.processors.format_exc_info,
            redactor,
            _json_bytes if binary is not None else renderer,
        ],
        wrapper_class=structlog.make_filtering_bound_logger(threshold),
        logger_factory=factory,
        cache_logger_on_first_use=True,
    )
    _route_standard_logging(stream, redactor, renderer, max(threshold, logging.WARNING))
    global _logger
    _logger = structlog.get_logger("relay").bind()


def _writer_factory(file: BinaryIO) -> Any:
    writer = TurnWriter(file)
    return lambda *_args: writer


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
