"""Dockership's HTTP endpoints (seeds/dockership-extending.txt), admin token: chains shown as
Dockership shows projects. GET /rest/projects, /rest/status, /rest/status/{chain}.

Entries have the keys of Dockership's JSON serialisation of its Go values (core/project.go
`Project`, http/handle_status.go `StatusResult`; capitalised, zero values where relay has
nothing to say), filled from the chain, with relay's own keys beside them. The web hook a
chain may set is sent by notices.dockership_report.
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
    found = await request.app[STORE].read(lambda tx: _statuses(tx, settings))
    shown = Shown(settings)
    return answers.respond({chain.name: shown.project(chain, found[chain.name])
                            for chain in settings.chains})


async def statuses(request: web.Request) -> web.Response:
    settings = request.app[CONFIG].current
    auth.require_admin(request)
    found = await request.app[STORE].read(lambda tx: _statuses(tx, settings))
    shown = Shown(settings)
    return answers.respond({chain.name: shown.status(chain, found[chain.name])
                            for chain in settings.chains})


async def status(request: web.Request) -> web.Response:
    """The entry itself, as the seed says (Dockership's own code wraps it in a map)."""
    chain = auth.admin_chain(request)
    found = await request.app[STORE].read(lambda tx: chains.status(tx, chain.name))
    return answers.respond(Shown(request.app[CONFIG].current).status(chain, found))


async def _statuses(tx: Tx, settings: config.Settings) -> dict[str, chains.Status]:
    return {chain.name: await chains.status(tx, chain.name) for chain in settings.chains}


class Shown:
    """Chains as Dockership's Project and StatusResult values, with no secret in them."""

    def __init__(self, settings: config.Settings) -> None:
        self.redactor = redaction.Redactor(settings.secrets)

    def project(self, chain: config.Chain, found: chains.Status) -> dict[str, Any]:
        name = notices.environment(chain)
        return {
            "Name": chain.name,
            # What was deployed last, else what the chain takes.
            "Repository": found.last_repository or next(iter(chain.repositories), ""),
            "RelatedRepositories": None,
            "Dockerfile": "",
            "History": 0,
            "UseShortRevisions": False,
            "Files": None,
            "TestCommand": "",
            "NoCache": False,
            "Restart": "",
            "Ports": None,
            "Binds": None,
            "VolumesFrom": None,
            "LinkNames": None,
            "Environments": {name: environment(name)},
            "EnvironmentNames": [name],
            # Dockership's running tasks by environment: a delivery running is a deploy.
            "TaskStatus": {name: {"deploy": found.running_since}} if found.running_since
            else {},
            "WebHook": self.url(chain.webhook) if chain.webhook else "",
            # relay's own
            "Environment": name,
            "Repositories": list(chain.repositories),
            "Concurrency": chain.concurrency,
            "Targets": [{"Name": target.name, "URL": self.url(target.url),
                         "AwaitCallback": target.await_callback,
                         "Signed": bool(target.secrets)}
                        for target in chain.targets],
        }

    def status(self, chain: config.Chain, found: chains.Status) -> dict[str, Any]:
        name = notices.environment(chain)
        revision = found.last_revision or ""
        return {
            "Project": self.project(chain, found),
            "Status": {name: {
                "LastRevisionLabel": revision,
                "Environment": environment(name),
                "LastRevision": {found.last_repository or chain.name: revision}
                if revision else {},
                "RunningContainers": [],
                "Containers": [],
                # relay's own
                "LastSuccessTime": found.last_success_at,
                "LastDelivery": found.last_delivery,
                "LastOutcome": found.last_outcome,
                "LastTime": found.last_finished_at,
                "Running": found.running,
                "Pending": found.pending,
            }},
            "Error": None,
        }

    def url(self, url: str) -> str:
        """Scheme, host and path only: user info and query strings often carry tokens, and
        any secret of the config (a `${ENV}` value) is scrubbed from what is left."""
        parts = urlsplit(redaction.without_credentials(url))
        return self.redactor.scrub(urlunsplit(parts._replace(query="", fragment="")))


def environment(name: str) -> dict[str, Any]:
    """Dockership's Environment: where it deploys (relay's targets stand for that)."""
    return {"DockerEndPoints": None, "EtcdServers": None, "Name": name, "Host": ""}
