"""Reading one TOML table: each value checked, each problem a ConfigError naming its key.

A `Table` knows where it is in the file (`chain[0].target[1]`), so a reader names a key once
(`table.duration("timeout", 10.0)`) and the message says `chain[0].target[1].timeout: ...`.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any, TypeVar
from urllib.parse import urlsplit

from relay import errors
from relay.config.settings import MIN_TOKEN_LENGTH

T = TypeVar("T")

_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$")
_ENV_REFERENCE = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)\}")
_DURATION = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*(ms|s|m|h|d)?\s*$")
_DURATION_UNITS = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0, "d": 86400.0, None: 1.0}
_RATE = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*/\s*(s|m|h)\s*$")


class Table:
    """One table of the document, the environment for `${VAR}`, and the secrets seen so far."""

    def __init__(self, data: dict[str, Any], where: str, environ: Mapping[str, str],
                 secrets: set[str]) -> None:
        self.data = data
        self.where = where
        self.environ = environ
        self.secrets = secrets

    def path(self, key: str) -> str:
        return f"{self.where}.{key}" if self.where else key

    def __contains__(self, key: str) -> bool:
        return key in self.data

    def raw(self, key: str) -> Any:
        return self.data.get(key)

    def only(self, allowed: set[str]) -> None:
        for key in self.data:
            if key not in allowed:
                raise errors.ConfigError(f"{self.path(key)}: unknown key")

    def table(self, key: str) -> Table:
        value = self.data.get(key, {})
        if not isinstance(value, dict):
            raise errors.ConfigError(f"{self.path(key)}: must be a table ([{self.path(key)}])")
        return Table(value, self.path(key), self.environ, self.secrets)

    def tables(self, key: str) -> list[Table]:
        """An array of tables (`[[chain]]`), each knowing its index."""
        value = self.data.get(key, [])
        if not isinstance(value, list):
            raise errors.ConfigError(f"{self.path(key)}: must be an array of tables "
                                     f"([[{self.path(key)}]])")
        found = []
        for index, item in enumerate(value):
            where = f"{self.path(key)}[{index}]"
            if not isinstance(item, dict):
                raise errors.ConfigError(f"{where}: must be a table")
            found.append(Table(item, where, self.environ, self.secrets))
        return found

    def get(self, key: str, kind: type[T], kind_name: str, default: T,
            secret: bool = False) -> T:
        value = self.data.get(key, default)
        if not isinstance(value, kind) or (kind is int and isinstance(value, bool)):
            shown = type(value).__name__ if secret else show(value)
            raise errors.ConfigError(f"{self.path(key)}: must be {kind_name}, got {shown}")
        return value

    def expand(self, value: str, key: str, secret: bool) -> str:
        """`value` with each `${VAR}` replaced from the environment (always a secret)."""
        def substitute(match: re.Match[str]) -> str:
            variable = match.group(1)
            if variable not in self.environ:
                raise errors.ConfigError(
                    f"{self.path(key)}: environment variable {variable} is not set")
            expanded = self.environ[variable]
            if expanded:
                self.secrets.add(expanded)
            return expanded

        expanded = _ENV_REFERENCE.sub(substitute, value)
        if secret and expanded:
            self.secrets.add(expanded)
        return expanded

    def string(self, key: str, default: str, secret: bool = False) -> str:
        return self.expand(self.get(key, str, "a string", default, secret), key, secret)

    def strings(self, key: str, default: tuple[str, ...],
                secret: bool = False) -> tuple[str, ...]:
        value = self.data.get(key, default)
        if isinstance(value, str):
            value = [value]
        if not isinstance(value, list | tuple) or not all(isinstance(v, str) for v in value):
            shown = type(value).__name__ if secret else show(value)
            raise errors.ConfigError(f"{self.path(key)}: must be a string or a list of "
                                     f"strings, got {shown}")
        return tuple(self.expand(v, key, secret) for v in value)

    def integer(self, key: str, default: int, minimum: int | None = None,
            maximum: int | None = None) -> int:
        value = self.get(key, int, "an integer", default)
        if minimum is not None and value < minimum:
            raise errors.ConfigError(f"{self.path(key)}: must be at least {minimum}, "
                                     f"got {value}")
        if maximum is not None and value > maximum:
            raise errors.ConfigError(f"{self.path(key)}: must be at most {maximum}, "
                                     f"got {value}")
        return value

    def boolean(self, key: str, default: bool) -> bool:
        return self.get(key, bool, "true or false", default)

    def duration(self, key: str, default: float, allow_zero: bool = False) -> float:
        value = self.data.get(key, default)
        seconds = parse_duration(value)
        if seconds is None or seconds < 0 or (seconds == 0 and not allow_zero):
            kind = "zero or a positive" if allow_zero else "a positive"
            raise errors.ConfigError(f"{self.path(key)}: must be {kind} number of seconds or "
                                     f"a duration like \"10s\", \"5m\", got {show(value)}")
        return seconds

    def name(self) -> str:
        """The table's `name`: what history, metrics and URLs call the chain or target."""
        path = self.path("name")
        if "name" not in self.data:
            raise errors.ConfigError(f"{path}: is required")
        name = self.get("name", str, "a string", "")
        if not _NAME.match(name):
            raise errors.ConfigError(f"{path}: {name!r} must be 1-64 letters, digits, "
                                     "'.', '_' or '-'")
        return name

    def token(self, key: str) -> str:
        if key not in self.data:
            raise errors.ConfigError(f"{self.path(key)}: is required")
        return checked_token(self.string(key, "", secret=True), self.path(key))

    def tokens(self, key: str) -> tuple[str, ...]:
        """One token, or a list of them while senders move from an old one to a new one."""
        if key not in self.data:
            raise errors.ConfigError(f"{self.path(key)}: is required")
        tokens = self.strings(key, (), secret=True)
        if not tokens:
            raise errors.ConfigError(f"{self.path(key)}: must name at least one token")
        for index, token in enumerate(tokens):
            checked_token(token, self.path(key) if len(tokens) == 1
                          else f"{self.path(key)}[{index}]")
        return tokens

    def url(self, key: str, default: str) -> str:
        if key not in self.data and not default:
            raise errors.ConfigError(f"{self.path(key)}: is required")
        url = self.string(key, default)
        if not is_http_url(url):
            raise errors.ConfigError(f"{self.path(key)}: must be an absolute http(s) URL, "
                                     f"got {url!r}")
        return url


def parse_rate(table: Table, key: str) -> tuple[float, float]:
    """A rate such as "600/m": the count, and the same as a rate per second."""
    text = table.get(key, str, "a string", "")
    match = _RATE.match(text)
    count = float(match.group(1)) if match else 0.0
    if match is None or count <= 0:
        raise errors.ConfigError(f"{table.path(key)}: must be a rate such as \"50/s\", "
                                 f"\"600/m\" or \"1000/h\", got {show(text)}")
    return count, count / _DURATION_UNITS[match.group(2)]


def checked_token(token: str, path: str) -> str:
    if len(token) < MIN_TOKEN_LENGTH:
        raise errors.ConfigError(f"{path}: must be at least {MIN_TOKEN_LENGTH} characters "
                                 f"long (it has {len(token)})")
    if token.strip() != token or any(c in token for c in "/?# "):
        raise errors.ConfigError(f"{path}: must not contain spaces, '/', '?' or '#'")
    return token


def parse_duration(value: object) -> float | None:
    """Seconds from a number or a string such as "250ms", "10s", "5m", "1h", "30d"."""
    if isinstance(value, bool):
        return None
    if isinstance(value, int | float):
        return float(value)
    if isinstance(value, str) and (match := _DURATION.match(value)):
        return float(match.group(1)) * _DURATION_UNITS[match.group(2)]
    return None


def is_http_url(url: str) -> bool:
    try:
        parts = urlsplit(url)
        parts.port  # noqa: B018 - raises ValueError on a bad port
    except ValueError:
        return False
    return parts.scheme in ("http", "https") and bool(parts.hostname)


def show(value: object) -> str:
    text = repr(value)
    return text if len(text) <= 40 else text[:37] + "..."
