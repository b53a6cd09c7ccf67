"""The keys that shape what a target receives and which pushes reach it: `headers`, `body`
(a JMESPath expression) and `tags`, each checked when the config is read."""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

import jmespath
import jmespath.exceptions
import jmespath.parser

from relay import errors
from relay.config.fields import Table

_TOKEN = re.compile(r"^[!#$%&'*+.^_`|~0-9A-Za-z-]+$")
"""An HTTP header name (RFC 9110's token)."""
OWN_HEADERS = frozenset({"content-type", "content-length", "host", "transfer-encoding",
                         "connection"})
"""Headers relay sets itself (and the Standard Webhooks `webhook-*` ones)."""

SAMPLE_CONTEXT: dict[str, Any] = {
    "payload": {"callback_url": "http://relay.example/callbacks/sample",
                "push_data": {"pushed_at": 1417566161, "pusher": "trustedbuilder",
                              "tag": "latest"},
                "repository": {"name": "testhook", "namespace": "svendowideit",
                               "owner": "svendowideit", "repo_name": "svendowideit/testhook",
                               "repo_url": "https://registry.hub.docker.com/u/svendowideit/"
                                           "testhook/"}},
    "callback_url": "http://relay.example/callbacks/sample",
    "delivery": {"id": "06h0000000000000000000000", "chain": "sample"},
    "step": {"index": 0, "target": "sample"},
}
"""What a body expression is evaluated over, filled with the seed push: an expression that
calls an unknown function, or one with the wrong number of arguments, fails on it."""


def target_headers(table: Table) -> tuple[tuple[str, str], ...]:
    """`headers = {Authorization = "Bearer ${TOKEN}"}`: names checked, values secret."""
    raw = table.raw("headers")
    if raw is None:
        return ()
    if not isinstance(raw, dict):
        raise errors.ConfigError(f"{table.path('headers')}: must be a table of header names "
                                 "and values, such as { Authorization = \"Bearer ${TOKEN}\" }")
    headers = table.table("headers")
    found: list[tuple[str, str]] = []
    seen: set[str] = set()
    for name in raw:
        path = headers.path(name)
        if not _TOKEN.match(name):
            raise errors.ConfigError(f"{path}: {name!r} is not an HTTP header name")
        lowered = name.lower()
        if lowered in OWN_HEADERS or lowered.startswith("webhook-"):
            raise errors.ConfigError(f"{path}: relay sets this header itself")
        if lowered in seen:
            raise errors.ConfigError(f"{path}: is given twice (header names ignore case)")
        seen.add(lowered)
        value = headers.string(name, "", secret=True)
        if any(c in value for c in "\r\n\0"):
            raise errors.ConfigError(f"{path}: must be one line (no CR, LF or NUL)")
        found.append((name, value))
    return tuple(found)


@dataclass(frozen=True)
class Body:
    text: str
    expression: jmespath.parser.ParsedResult


def body_of(table: Table) -> Body | None:
    """`body = "<JMESPath>"`, compiled; `${VAR}` in it is expanded (and a secret)."""
    if "body" not in table:
        return None
    text = table.string("body", "", secret=False)
    path = table.path("body")
    if not text.strip():
        raise errors.ConfigError(f"{path}: must be a JMESPath expression, got an empty string")
    try:
        expression = jmespath.compile(text)
    except jmespath.exceptions.JMESPathError as exc:
        raise errors.ConfigError(f"{path}: not a JMESPath expression: {_problem(exc)}"
                                 ) from None
    try:
        expression.search(SAMPLE_CONTEXT)
    except (jmespath.exceptions.UnknownFunctionError, jmespath.exceptions.ArityError,
            jmespath.exceptions.VariadictArityError) as exc:
        raise errors.ConfigError(f"{path}: {exc}") from None
    except jmespath.exceptions.JMESPathError:
        pass  # may hold for real payloads: decided per delivery
    return Body(text, expression)


def _problem(exc: jmespath.exceptions.JMESPathError) -> str:
    if isinstance(exc, jmespath.exceptions.IncompleteExpressionError):
        return "it ends too early"
    if isinstance(exc, jmespath.exceptions.LexerError):
        return f"{exc.message} at character {exc.lexer_position + 1}"
    if isinstance(exc, jmespath.exceptions.ParseError):
        token = exc.token_value if exc.token_value is not None else exc.token_type
        return f"unexpected {token!r} at character {exc.lex_position + 1}"
    return str(exc).splitlines()[0]


def tag_patterns(table: Table) -> tuple[str, ...]:
    """`tags = ["v*", "latest"]`: globs on the pushed tag."""
    patterns = table.strings("tags", ())
    for pattern in patterns:
        if not pattern or pattern.strip() != pattern:
            raise errors.ConfigError(f"{table.path('tags')}: {pattern!r} is not a tag pattern "
                                     "such as \"v*\", \"latest\" or \"*\"")
    if "tags" in table and not patterns:
        raise errors.ConfigError(f"{table.path('tags')}: must name at least one pattern "
                                 "(\"*\" takes every push)")
    return patterns
