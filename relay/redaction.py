"""Keeping secrets out of what relay shows: log events, history, error bodies.

`Redactor` scrubs every configured secret, and the secret parts of relay's own URLs (chain
tokens, callback tokens, trigger ids), out of any text; `without_credentials` hides what a URL
from a config or from outside may carry (user:password, `?token=` values).
"""

from __future__ import annotations

import re
from collections.abc import Iterable, MutableMapping
from typing import Any
from urllib.parse import unquote_plus, urlsplit, urlunsplit

REDACTED = "[redacted]"

# The secret segment of relay's own URLs: /hooks/{chain}/{token}, /callbacks/{token},
# .../triggers/{id}/call/ (Docker Cloud's .../trigger/{id}/call/), and bearer credentials.
_URL_SECRETS = (
    r"(?P<keep>/hooks/[^/\s\"']+/|/callbacks/|/triggers?/)[^/\s\"'?#]+"
    r"|(?P<bearer>[Bb]earer\s+)[^\s\"',]+"
    r"|whsec_[A-Za-z0-9+/=]+"
)

# Values relay makes itself (ids, states, times): nothing to scrub. Not "event": a library's
# log record carries its message there.
_RELAYS_OWN = frozenset({"level", "timestamp", "delivery", "worker", "lease", "state",
                         "outcome", "step", "attempt", "status", "duration_ms"})


class Redactor:
    """A structlog processor that scrubs secrets out of every string in an event."""

    MEMORY = 4096
    """Short strings scrubbed lately, kept with their scrubbed form: a log line's chain,
    repository and tag come again and again, and a look-up costs a tenth of a scan."""
    SHORT = 256

    def __init__(self, secrets: Iterable[str]) -> None:
        self._known: set[str] = set()
        self._pattern = re.compile(_URL_SECRETS)
        self._scrubbed: dict[str, str] = {}
        self.learn(secrets)

    def learn(self, secrets: Iterable[str]) -> None:
        """Scrub these secrets too."""
        self._known |= {s for s in secrets if s}
        known = sorted(self._known, key=len, reverse=True)
        # One pattern for all, so that a clean string costs one scan.
        alternatives = [re.escape(s) for s in known] + [_URL_SECRETS]
        self._pattern = re.compile("|".join(f"(?:{a})" for a in alternatives))
        self._scrubbed = {}

    def scrub(self, text: str) -> str:
        if len(text) > self.SHORT:
            return self._pattern.sub(_keep_prefix, text)
        scrubbed = self._scrubbed.get(text)
        if scrubbed is None:
            scrubbed = self._pattern.sub(_keep_prefix, text)
            if len(self._scrubbed) >= self.MEMORY:
                self._scrubbed = {}
            self._scrubbed[text] = scrubbed
        return scrubbed

    def __call__(self, _logger: Any, _method: str,
                 event: MutableMapping[str, Any]) -> MutableMapping[str, Any]:
        for key, value in event.items():
            if key not in _RELAYS_OWN:
                event[key] = self._value(value)
        return event

    def _value(self, value: Any) -> Any:
        if isinstance(value, str):
            return self.scrub(value)
        if isinstance(value, dict):
            return {k: self._value(v) for k, v in value.items()}
        if isinstance(value, list | tuple):
            return [self._value(v) for v in value]
        return value


def _keep_prefix(match: re.Match[str]) -> str:
    return (match.group("keep") or match.group("bearer") or "") + REDACTED


def without_credentials(url: str) -> str:
    """A URL as history may show it: user and password taken out, and the values of query
    parameters that carry credentials by their name (`?token=`, `api_key=`, `sig=`...)."""
    parts = shown = urlsplit(url)
    if parts.username is not None or parts.password is not None:
        shown = shown._replace(netloc=parts.netloc.rpartition("@")[2])  # [v6] kept as is
    if parts.query:
        shown = shown._replace(query="&".join(
            _shown_parameter(pair) for pair in parts.query.split("&")))
    # A URL with nothing to hide stays as written (urlunsplit would lower-case its scheme,
    # drop an empty ? or #).
    return url if shown == parts else urlunsplit(shown)


_SECRET_PARAMETER = re.compile(
    r"(?:.*[-_.])?(?:token|secret|key|apikey|password|passwd|pwd|pass|sig|signature|auth"
    r"|code|credentials?)", re.IGNORECASE)


def _shown_parameter(pair: str) -> str:
    name, equals, _ = pair.partition("=")
    if equals and _SECRET_PARAMETER.fullmatch(unquote_plus(name)):
        return f"{name}=[redacted]"
    return pair


def shown_delivery(delivery: dict[str, Any], redactor: Redactor) -> dict[str, Any]:
    """A delivery of the history (store/views.py) with every URL in it without credentials
    (and without the config's secrets, such as a `${SLACK_WEBHOOK_URL}`): its steps', its
    notices', and the callback_url its payload came with."""
    payload = delivery["payload"]
    url = payload.get("callback_url") if isinstance(payload, dict) else None
    if isinstance(url, str) and (shown := without_credentials(url)) != url:
        payload = {**payload, "callback_url": shown}
    upstream = delivery.get("upstream")
    return {
        **delivery,
        "payload": payload,
        "steps": [_url_shown(step, redactor) for step in delivery["steps"]],
        "upstream": _url_shown(upstream, redactor) if upstream is not None else None,
        "notices": [_url_shown(notice, redactor) for notice in delivery["notices"]],
    }


def _url_shown(send: dict[str, Any], redactor: Redactor) -> dict[str, Any]:
    return {**send, "url": redactor.scrub(without_credentials(send["url"]))}
