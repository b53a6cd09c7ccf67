"""The exception tree of relay.

RelayError
├── ConfigError        relay.toml is unusable; names the key (and line)
├── HTTPError          answered to an HTTP client as DESIGN §4 JSON
│                      (status, one-sentence message, details, extra headers)
├── Refusal            the engine or the store will not do what was asked
│   ├── NotFound       no such thing (the HTTP layer answers 404)
│   ├── Conflict       it cannot be done in the state things are in (409)
│   └── Invalid        what was asked for is not valid (422)
├── StoreError         the database failed; the driver's exception is the __cause__
│   └── RowBusy        a row a grouped unit must lock is another transaction's: the
│                      store runs the unit again (its caller never sees this)
└── cli.client.ClientError  the CLI's request to a running relay failed (one line to show)

Delivery problems (refused connections, timeouts, bad statuses) are not exceptions:
`delivery.post` turns them into an `Answer` value that the chain engine decides on.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass


class RelayError(Exception):
    """Base of every error relay raises on purpose."""


class ConfigError(RelayError):
    """The configuration cannot be used; the message names the key."""


@dataclass(frozen=True)
class Detail:
    """One violation: a JSON pointer into the document and what is wrong there."""

    path: str
    message: str

    def as_json(self) -> dict[str, str]:
        return {"path": self.path, "message": self.message}


class HTTPError(RelayError):
    """An answer other than success, rendered as `{"error": ..., "details": [...]}`."""

    def __init__(
        self,
        status: int,
        message: str,
        details: Sequence[Detail] = (),
        headers: Mapping[str, str] | None = None,
    ) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.details = tuple(details)
        self.headers = dict(headers or {})

    def body(self) -> dict[str, object]:
        return {"error": self.message, "details": [d.as_json() for d in self.details]}


class Refusal(RelayError):
    """A request the engine or the store refuses: one sentence, and details for a 422.

    Layers below HTTP raise these; the HTTP layer's middleware turns each into its status."""

    def __init__(self, message: str, details: Sequence[Detail] = ()) -> None:
        super().__init__(message)
        self.message = message
        self.details = tuple(details)


class NotFound(Refusal):
    """There is no such delivery, step, hook or trigger."""


class Conflict(Refusal):
    """It cannot be done now: the step was answered already, the chain is gone..."""


class Invalid(Refusal):
    """What was asked for breaks a rule; `details` say where."""


class StoreError(RelayError):
    """The store could not do what was asked; the driver error is kept as __cause__."""


class RowBusy(StoreError):
    """A unit of a group commit found a row it must lock held by another transaction.

    Waiting would hold up every other unit of the group, and so every delivery they have
    locked (on PostgreSQL this made convoys of groups waiting for each other, seconds
    long): the store runs the unit again in a later group instead, or alone."""
