"""The client commands: relay history, show, redeliver, send, chains, reload, healthcheck
(against a running relay, over its HTTP API).

The config file: --config, else ./relay.toml when there is one (what `make run` serves).
Where relay is: --url, else RELAY_URL, else the address that config's [server] listens on,
else http://127.0.0.1:8080. The admin token: RELAY_ADMIN_TOKEN, else the config's. A chain
token (send): --token, else RELAY_CHAIN_TOKEN, else the config's chain.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Coroutine
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

from rich.console import Console

from relay import config, errors, models
from relay.cli import display, seed
from relay.cli.client import Client, ClientError
from relay.models import HISTORY_PAGE_MAX, DeliveryState

DEFAULT_URL = "http://127.0.0.1:8080"
DEFAULT_CONFIG = "relay.toml"
FOLLOW_SECONDS = 0.5
EXIT_BY_STATE = {"success": 0, "failure": 3, "error": 4}
EXIT_IGNORED = 5


def add_commands(commands: Any) -> None:
    """Add the client commands to the `relay` parser's subcommands."""
    where = argparse.ArgumentParser(add_help=False)
    where.add_argument("--url", help=f"relay's base URL (default: RELAY_URL, the address "
                                     f"--config listens on, or {DEFAULT_URL})")
    where.add_argument("--config", help="a relay.toml to take the address and tokens from "
                                        f"(default: ./{DEFAULT_CONFIG} if there is one)")
    where.add_argument("--json", action="store_true", help="print relay's JSON as it is")

    listing = commands.add_parser("history", parents=[where],
                                  help="list deliveries, newest first")
    listing.add_argument("--chain")
    listing.add_argument("--state", choices=[s.value for s in DeliveryState])
    listing.add_argument("--repository", help="namespace/name")
    listing.add_argument("--tag")
    listing.add_argument("--limit", type=int, default=20,
                         help=f"1-{HISTORY_PAGE_MAX} (default 20)")
    listing.set_defaults(run=_runner(_history))

    show = commands.add_parser("show", parents=[where], help="one delivery, step by step")
    show.add_argument("id")
    show.set_defaults(run=_runner(_show))

    again = commands.add_parser(
        "redeliver", parents=[where],
        help="send a delivery's payload through its chain again; without an id, every "
             "ended delivery that --state/--since/... select")
    again.add_argument("id", nargs="?")
    again.add_argument("--from-step", help='start at this step index, or "failed": the '
                                           "first step that did not succeed")
    again.add_argument("--follow", action="store_true", help="follow it until it ends")
    for name in ("chain", "repository", "tag"):
        again.add_argument(f"--{name}")
    again.add_argument("--state", choices=sorted(models.FINAL_DELIVERY_STATES))
    again.add_argument("--since", help="received since: a time (RFC 3339) or an age (2h, 3d)")
    again.add_argument("--until", help="received before: a time (RFC 3339) or an age")
    again.add_argument("--dry-run", action="store_true", help="say how many, redeliver none")
    again.set_defaults(run=_runner(_redeliver))

    prune = commands.add_parser(
        "prune", parents=[where],
        help="delete deliveries that ended longer ago than --older-than (as [history] "
             "retention does in the background)")
    prune.add_argument("--older-than", required=True, help="an age such as 7d or 12h")
    prune.add_argument("--dry-run", action="store_true", help="say how many, delete none")
    prune.set_defaults(run=_runner(_prune))

    listed = commands.add_parser("targets", parents=[where],
                                 help="every target: active or paused, recent failures")
    listed.set_defaults(run=_runner(_targets))
    for action in ("pause", "resume"):
        change = commands.add_parser(
            action, parents=[where],
            help=f"{action} a target: a paused one receives nothing, its steps wait")
        change.add_argument("chain")
        change.add_argument("target")
        change.set_defaults(run=_runner(_set_target), action=action)

    send = commands.add_parser(
        "send", parents=[where], help="push a payload (Docker Hub's example by default) "
                                      "to a chain and follow it until it ends")
    send.add_argument("--chain", required=True)
    send.add_argument("file", nargs="?", help="JSON payload ('-' for stdin)")
    send.add_argument("--token", help="the chain's token (default: RELAY_CHAIN_TOKEN, or "
                                      "--config's chain)")
    send.add_argument("--no-follow", action="store_true",
                      help="print the delivery's id and return at once")
    send.set_defaults(run=_runner(_send))

    listed = commands.add_parser(
        "chains", parents=[where],
        help="the running relay's chains, with each one's Docker Cloud service UUID")
    listed.set_defaults(run=_runner(_chains))

    reload = commands.add_parser(
        "reload", parents=[where],
        help="make a running relay read its config file again (as SIGHUP does)")
    reload.set_defaults(run=_runner(_reload))

    probe = commands.add_parser("healthcheck",
                                help="exit 0 when relay answers /healthz (for HEALTHCHECK)")
    probe.add_argument("--url")
    probe.add_argument("--config")
    probe.add_argument("--ready", action="store_true", help="ask /readyz: is the store up?")
    probe.add_argument("--timeout", type=float, default=3.0)
    probe.set_defaults(run=_healthcheck)


@dataclass(frozen=True)
class Where:
    url: str
    admin_token: str | None
    settings: config.Settings | None
    config_path: str | None = None

    def client(self, need_admin: bool = True) -> Client:
        if need_admin and not self.admin_token:
            raise errors.ConfigError("no admin token: set RELAY_ADMIN_TOKEN to relay's "
                                     "[server] admin_token (or give --config relay.toml)")
        return Client(self.url, self.admin_token)


def where(args: argparse.Namespace) -> Where:
    path = args.config or (DEFAULT_CONFIG if Path(DEFAULT_CONFIG).is_file() else None)
    settings = config.load(path) if path else None
    url = args.url or os.environ.get("RELAY_URL") or (
        local_url(settings) if settings else DEFAULT_URL)
    admin = os.environ.get("RELAY_ADMIN_TOKEN") or (
        settings.server.admin_token if settings else None)
    return Where(url, admin, settings, path)


def local_url(settings: config.Settings) -> str:
    """Where the relay of `settings` is reached from its own machine."""
    host = settings.server.host
    if host in ("", "0.0.0.0", "::"):  # noqa: S104 - a listening address, not a binding
        host = "127.0.0.1"
    if ":" in host:
        host = f"[{host}]"
    return f"http://{host}:{settings.server.port}"


Command = Callable[[argparse.Namespace, Where, Console], Coroutine[Any, Any, int]]


def _runner(command: Command) -> Callable[[argparse.Namespace], int]:
    def run(args: argparse.Namespace) -> int:
        # Piped output gets wide lines rather than rich's 80 columns.
        width = None if sys.stdout.isatty() else 200
        return asyncio.run(command(args, where(args), Console(highlight=False, width=width)))

    return run


def _print_json(document: Any) -> None:
    print(json.dumps(document, indent=2, ensure_ascii=False))


def _shown(args: argparse.Namespace, console: Console, answer: Any, shown: Any) -> int:
    """relay's answer as JSON with --json, else as `shown` (a line or a table)."""
    if args.json:
        _print_json(answer)
    else:
        console.print(shown)
    return 0


async def _history(args: argparse.Namespace, at: Where, console: Console) -> int:
    if not 1 <= args.limit <= HISTORY_PAGE_MAX:
        raise errors.ConfigError(f"--limit must be from 1 to {HISTORY_PAGE_MAX}")
    async with at.client() as client:
        page = await client.history(chain=args.chain, state=args.state, tag=args.tag,
                                    repository=args.repository, limit=args.limit)
    if args.json:
        _print_json(page)
    elif not page["items"]:
        console.print("no deliveries match")
    else:
        console.print(display.history(page["items"]))
        if page.get("next_cursor"):
            console.print(f"… older deliveries not shown (--limit {args.limit})", style="dim")
    return 0


async def _show(args: argparse.Namespace, at: Where, console: Console) -> int:
    async with at.client() as client:
        found = await client.delivery(args.id)
    if args.json:
        _print_json(found)
    else:
        for part in display.delivery(found):
            console.print(part)
    return 0


async def _redeliver(args: argparse.Namespace, at: Where, console: Console) -> int:
    start = _from_step(args.from_step)
    matching = {"chain": args.chain, "state": args.state, "repository": args.repository,
                "tag": args.tag, "since": _moment(args.since, "--since"),
                "until": _moment(args.until, "--until")}
    if args.id is None:
        return await _redeliver_matching(args, at, console, matching, start)
    if any(v is not None for v in matching.values()) or args.dry_run:
        raise errors.ConfigError("give a delivery id, or --state/--since/... to select "
                                 "deliveries, not both")
    async with at.client() as client:
        answer = await client.redeliver(args.id, start)
        if args.json and not args.follow:
            _print_json(answer)
            return 0
        console.print(f"redelivered {display.clean(args.id)} as {display.clean(answer['id'])}")
        if not args.follow:
            return 0
        return await follow(client, answer["id"], console)


async def _redeliver_matching(args: argparse.Namespace, at: Where, console: Console,
                              matching: dict[str, str | None], start: int | str | None) -> int:
    if matching["state"] is None and matching["since"] is None:
        raise errors.ConfigError("give a delivery id, or --state and/or --since to select "
                                 "the deliveries to redeliver")
    async with at.client() as client:
        answer = await client.redeliver_matching(**matching, from_step=start,
                                                 dry_run=args.dry_run or None)
    if args.json:
        _print_json(answer)
    elif args.dry_run:
        console.print(f"{answer['count']} deliveries match (nothing redelivered: --dry-run)")
    else:
        console.print(f"redelivered {answer['count']} deliveries")
        for new_id in answer["ids"]:
            console.print(display.clean(new_id))
    return 0


def _from_step(text: str | None) -> int | str | None:
    if text is None or text == "failed":
        return text
    if text.isascii() and text.isdigit():
        return int(text)
    raise errors.ConfigError(f'--from-step must be a step index or "failed", got {text!r}')


def _moment(text: str | None, option: str) -> str | None:
    """An RFC 3339 time as given, or an age ("2h") as the time that long ago."""
    if text is None:
        return None
    age = config.parse_duration(text)
    if age is not None and not text.replace(".", "").isdigit():
        return models.iso(time.time() - age)
    try:
        datetime.fromisoformat(text)
    except ValueError:
        raise errors.ConfigError(f"{option} must be an age such as 2h or 3d, or an RFC 3339 "
                                 f"time, got {text!r}") from None
    return text


async def _prune(args: argparse.Namespace, at: Where, console: Console) -> int:
    async with at.client() as client:
        answer = await client.prune(args.older_than, args.dry_run)
    verb = "would delete" if args.dry_run else "deleted"
    return _shown(args, console, answer, f"{verb} {answer['count']} deliveries that ended "
                                         f"more than {display.clean(args.older_than)} ago")


async def _targets(args: argparse.Namespace, at: Where, console: Console) -> int:
    async with at.client() as client:
        answer = await client.targets()
    return _shown(args, console, answer, display.targets(answer["items"]))


async def _set_target(args: argparse.Namespace, at: Where, console: Console) -> int:
    async with at.client() as client:
        answer = await client.set_target(args.chain, args.target, args.action)
    return _shown(args, console, answer, display.targets([answer]))


async def _chains(args: argparse.Namespace, at: Where, console: Console) -> int:
    async with at.client() as client:
        services = await client.services()
    if args.json:
        _print_json(services)
    elif not services:
        console.print("no chains are configured")
    else:
        console.print(display.chains(services))
    return 0


async def _reload(args: argparse.Namespace, at: Where, console: Console) -> int:
    async with at.client() as client:
        answer = await client.reload()
    if args.json:
        _print_json(answer)
        return 0
    chains = ", ".join(display.clean(name) for name in answer["chains"]) or "none"
    what = "reloaded" if answer["changed"] else "reloaded, nothing changed"
    console.print(f"{what}: version {display.clean(answer['version'])}; chains: {chains}")
    for key in answer["restart_needed"]:
        console.print(f"{display.clean(key)} changed: it takes effect at the next restart",
                      style="yellow")
    return 0


async def _send(args: argparse.Namespace, at: Where, console: Console) -> int:
    token = args.token or os.environ.get("RELAY_CHAIN_TOKEN") or _chain_token(args, at)
    body = _payload(args.file)
    async with at.client(need_admin=not args.no_follow) as client:
        answer = await client.push(args.chain, token, body)
        if args.json and args.no_follow:
            _print_json(answer)
            return EXIT_IGNORED if "ignored" in answer else 0
        if "ignored" in answer:
            console.print(f"ignored: {display.clean(answer['ignored'])}")
            return EXIT_IGNORED
        console.print(f"delivery {display.clean(answer['id'])} accepted by chain "
                      f"{display.clean(args.chain)}")
        if args.no_follow:
            console.print(display.clean(answer.get("status_url")))
            return 0
        return await follow(client, answer["id"], console)


def _chain_token(args: argparse.Namespace, at: Where) -> str:
    if at.settings is None:
        raise errors.ConfigError(f"no token for chain {args.chain}: give --token, set "
                                 "RELAY_CHAIN_TOKEN, or give --config relay.toml")
    chain = at.settings.chain(args.chain)
    if chain is None:
        names = ", ".join(c.name for c in at.settings.chains) or "none"
        raise errors.ConfigError(f"{at.config_path} has no chain {args.chain!r} (it has: "
                                 f"{names})")
    return chain.token


def _payload(file: str | None) -> bytes:
    if file is None:
        return json.dumps(seed.seed_push()).encode()
    if file == "-":
        return sys.stdin.buffer.read()
    try:
        return Path(file).read_bytes()
    except OSError as exc:
        raise errors.ConfigError(f"{file}: cannot read: {exc.strerror}") from None


async def follow(client: Client, delivery_id: str, console: Console,
                 interval: float = FOLLOW_SECONDS) -> int:
    """Print each change of a delivery until it ends; the exit code for its final state."""
    before: dict[str, Any] | None = None
    while True:
        found = await client.delivery(delivery_id)
        final = found["state"] in models.FINAL_DELIVERY_STATES
        if final:
            # A callback may end a step before relay has recorded the answer to its POST.
            await asyncio.sleep(interval)
            found = await client.delivery(delivery_id)
        for line in display.changes(before, found):
            console.print(line)
        if final:
            return EXIT_BY_STATE[found["state"]]
        before = found
        await asyncio.sleep(interval)


def _healthcheck(args: argparse.Namespace) -> int:
    url = where(args).url
    probe = f"{url.rstrip('/')}/{'readyz' if args.ready else 'healthz'}"
    direct = urllib.request.build_opener(urllib.request.ProxyHandler({}))  # no *_proxy
    try:
        with direct.open(probe, timeout=args.timeout) as answer:
            status = answer.status
    except urllib.error.HTTPError as exc:
        status = exc.code
    except (urllib.error.URLError, OSError) as exc:
        raise ClientError(f"cannot reach relay at {url}: {getattr(exc, 'reason', exc)}"
                          ) from None
    if status != 200:
        raise ClientError(f"{probe} answered {status}")
    print("ok")
    return 0
