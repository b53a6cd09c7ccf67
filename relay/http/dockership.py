"""Dockership's HTTP endpoints (seeds/dockership-extending.txt), admin token: chains shown as
Dockership shows projects. GET /rest/projects, /rest/status, /rest/status/{chain}.

Dockership serialises its Go structs as they are, so keys are capitalised (`LastRevision`).
The web hook a chain may set is sent by notices.dockership_report.
"""

from __future__ import annotations

from typing import Any
from urllib.parse import urlsplit, urlunsplit

from aiohttp import web

from relay import config, redaction
from relay.engine import notices
from relay.http import answers, auth
from relay.http.appkeys import CONFIG, STORE
from relay.store import chains
from relay.store.base import Tx


async def projects(request: web.Request) -> web.Response:
    settings = request.app[CONFIG].current
    auth.require_admin(request)
    shown = Shown(settings)
    return answers.respond({chain.name: shown.project(chain) for chain in settings.chains})


async def statuses(request: web.Request) -> web.Response:
    settings = request.app[CONFIG].current
    auth.require_admin(request)
    names = [chain.name for chain in settings.chains]
    found = await request.app[STORE].read(lambda tx: _statuses(tx, names))
    shown = Shown(settings)
    return answers.respond({chain.name: shown.status(chain, found[chain.name])
                            for chain in settings.chains})


async def status(request: web.Request) -> web.Response:
    chain = auth.admin_chain(request)
    found = await request.app[STORE].read(lambda tx: chains.status(tx, chain.name))
    return answers.respond(Shown(request.app[CONFIG].current).status(chain, found))


async def _statuses(tx: Tx, names: list[str]) -> dict[str, chains.Status]:
    return {name: await chains.status(tx, name) for name in names}


class Shown:
    """Chains as Dockership's Project and StatusResult values, with no secret in them."""

    def __init__(self, settings: config.Settings) -> None:
        self.redactor = redaction.Redactor(settings.secrets)

    def project(self, chain: config.Chain) -> dict[str, Any]:
        return {
            "Name": chain.name,
            "Environment": notices.environment(chain),
            "WebHook": self.url(chain.webhook) if chain.webhook else None,
            "Repositories": list(chain.repositories),
            "Concurrency": chain.concurrency,
            "Targets": [{"Name": target.name, "URL": self.url(target.url),
                         "AwaitCallback": target.await_callback,
                         "Signed": bool(target.secrets)}
                        for target in chain.targets],
        }

    def status(self, chain: config.Chain, found: chains.Status) -> dict[str, Any]:
        name = notices.environment(chain)
        return {
            "Project": self.project(chain),
            "Status": {name: {
                "Environment": {"Name": name},
                "LastRevision": found.last_revision or "",
                "LastSuccessTime": found.last_success_at,
                "LastDelivery": found.last_delivery,
                "LastOutcome": found.last_outcome,
                "LastTime": found.last_finished_at,
                "Running": found.running,
                "Pending": found.pending,
            }},
            "Error": "",
        }

    def url(self, url: str) -> str:
        """Scheme, host and path only: user info and query strings often carry tokens, and
        any secret of the config (a `${ENV}` value) is scrubbed from what is left."""
        parts = urlsplit(redaction.without_credentials(url))
        return self.redactor.scrub(urlunsplit(parts._replace(query="", fragment="")))
