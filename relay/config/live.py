"""The configuration of a running relay: the Settings it serves by now, those that deliveries
still running started with, and reloading the file without a restart.

Each Settings has a version (a digest of what it says); a delivery keeps the version it was
started with, so a reload changes nothing for deliveries already running. Processes that
share a store and load the same file agree on versions; a version a process does not know
(it was reloaded elsewhere, or restarted since) falls back to the current one.
"""

from __future__ import annotations

import hashlib
import os
from collections import OrderedDict
from collections.abc import Callable, Mapping
from dataclasses import dataclass, replace
from pathlib import Path

from relay.config.loading import load
from relay.config.settings import ServerSettings, Settings, StoreSettings

KEPT_VERSIONS = 32
"""Earlier configurations kept for the deliveries that started with them."""

RESTART_ONLY = {"server": ("host", "port", "public_url", "admin_token", "max_body_bytes",
                           "max_json_depth", "header_timeout", "read_timeout",
                           "shutdown_grace"),
                "store": ("url",), "delivery": ("max_connections",),
                "outbound": ("allow_networks",)}
"""Keys a reload does not change (what the listening socket, the open store and the
connection pools were made from): a change there is reported and waits for a restart."""


def version_of(settings: Settings) -> str:
    """A short, stable digest of what `settings` says about delivering: all but [server] and
    [store], which differ between processes sharing a store (each has its own port), so
    that those agree on versions and a delivery accepted by one is not planned again when
    another starts it."""
    shared = replace(settings, server=ServerSettings(), store=StoreSettings())
    return hashlib.sha256(repr(shared).encode()).hexdigest()[:16]


@dataclass(frozen=True)
class Reloaded:
    settings: Settings
    version: str
    changed: bool
    """Whether the file said anything new."""
    restart_needed: tuple[str, ...] = ()
    """Keys of the file that changed in sections a reload leaves alone."""


class Live:
    """What the engine and the HTTP layer read the configuration from."""

    def __init__(self, settings: Settings, path: str | os.PathLike[str] | None = None,
                 environ: Mapping[str, str] | None = None) -> None:
        self.path = Path(path) if path is not None else None
        self.environ = environ
        self._versions: OrderedDict[str, Settings] = OrderedDict()
        self.current = settings
        self.version = version_of(settings)
        self._versions[self.version] = settings
        self._listeners: list[Callable[[Settings], None]] = []

    def of(self, version: str | None) -> Settings:
        """The Settings of `version` (a delivery's), or the current ones if it is unknown."""
        if version is None:
            return self.current
        return self._versions.get(version, self.current)

    def on_reload(self, listener: Callable[[Settings], None]) -> None:
        """Call `listener` with the new Settings after each reload that changed something."""
        self._listeners.append(listener)

    def reload(self) -> Reloaded:
        """Read the file again and serve by it; a ConfigError leaves everything as it was."""
        if self.path is None:
            return Reloaded(self.current, self.version, changed=False)
        fresh = load(self.path, self.environ)
        restart_needed: list[str] = []
        sections = {}
        for name, keys in RESTART_ONLY.items():
            old, new = getattr(self.current, name), getattr(fresh, name)
            restart_needed += [f"{name}.{key}" for key in keys
                               if getattr(old, key) != getattr(new, key)]
            sections[name] = replace(new, **{key: getattr(old, key) for key in keys})
        # Secrets of the old file stay redacted: a rotated token is still a secret.
        settings = replace(fresh, **sections, secrets=fresh.secrets | self.current.secrets)
        if repr(settings) == repr(self.current):
            return Reloaded(settings, self.version, changed=False,
                            restart_needed=tuple(restart_needed))
        version = version_of(settings)
        self.current, self.version = settings, version
        self._versions[version] = settings
        self._versions.move_to_end(version)
        while len(self._versions) > KEPT_VERSIONS:
            self._versions.popitem(last=False)
        for listener in self._listeners:
            listener(settings)
        return Reloaded(settings, version, changed=True, restart_needed=tuple(restart_needed))
