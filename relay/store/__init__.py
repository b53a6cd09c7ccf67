"""Persistence: `open_store(url)` picks the backend by the URL's scheme."""

from __future__ import annotations

from pathlib import Path
from urllib.parse import urlsplit

from relay import errors
from relay.store.base import Row, Store, Tx, Unit

__all__ = ["Row", "Store", "Tx", "Unit", "open_store", "sqlite_path"]


def sqlite_path(url: str) -> Path:
    """`sqlite:///data/relay.db` is relative to the working directory, `sqlite:////abs` not."""
    path = url.removeprefix("sqlite://")
    if not path.startswith("/") or path == "/":
        raise errors.ConfigError(f"store.url: {url!r} names no file (sqlite:///relative/path "
                                 "or sqlite:////absolute/path)")
    return Path(path[1:])


async def open_store(url: str) -> Store:
    scheme = urlsplit(url).scheme
    if scheme == "sqlite":
        from relay.store.sqlite import SqliteStore

        return await SqliteStore.open(sqlite_path(url))
    if scheme in ("postgresql", "postgres"):
        from relay.store.postgres import PostgresStore

        return await PostgresStore.open(url)
    raise errors.ConfigError(f"store.url: scheme {scheme!r} is not supported "
                             "(use sqlite:/// or postgresql://)")
