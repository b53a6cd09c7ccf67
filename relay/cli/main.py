"""The `relay` command: subcommands, each mapping RelayError to one clear line and an exit code."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import signal
import sys
from collections.abc import Sequence

from relay import __version__, config, errors, logs
from relay.cli import client_commands, example_target
from relay.config import schedule

EXIT_CONFIG = 2
EXIT_FAILED = 1


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        result: int = args.run(args)
        return result
    except errors.ConfigError as exc:
        print(f"relay: configuration error: {exc}", file=sys.stderr)
        return EXIT_CONFIG
    except errors.RelayError as exc:
        print(f"relay: {exc}", file=sys.stderr)
        return EXIT_FAILED
    except KeyboardInterrupt:
        return 130


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="relay",
                                     description="A Docker Hub-style webhook chain relay.")
    parser.add_argument("--version", action="version", version=f"relay {__version__}")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    serve = commands.add_parser("serve", help="serve until SIGTERM or SIGINT")
    serve.add_argument("--config", required=True, help="path of relay.toml")
    serve.add_argument("--log-level", default="info",
                       choices=["debug", "info", "warning", "error"])
    serve.set_defaults(run=run_serve)

    check = commands.add_parser("check-config", help="check relay.toml and exit")
    check.add_argument("--config", required=True, help="path of relay.toml")
    check.set_defaults(run=run_check_config)

    client_commands.add_commands(commands)
    example_target.add_command(commands)
    return parser


def run_serve(args: argparse.Namespace) -> int:
    from aiohttp import web

    from relay.http.app import make_app, reload_config, server_options, tune_for_serving

    settings = config.load(args.config)
    logs.configure(settings.secrets, level=args.log_level)
    log = logs.get()
    log.info("relay.starting", version=__version__, host=settings.server.host,
             port=settings.server.port, store=_store_kind(settings.store.url),
             chains=[c.name for c in settings.chains])
    app = make_app(config.Live(settings, args.config))

    def reload_on_hangup() -> None:
        with contextlib.suppress(errors.ConfigError):  # logged; the old config serves on
            reload_config(app)

    async def listen_for_hangup(_: web.Application) -> None:
        asyncio.get_running_loop().add_signal_handler(signal.SIGHUP, reload_on_hangup)

    app.on_startup.append(listen_for_hangup)
    tune_for_serving()
    web.run_app(
        app,
        host=settings.server.host,
        port=settings.server.port,
        access_log=None,
        print=None,
        handle_signals=True,
        **server_options(settings),
    )
    log.info("relay.stopped")
    return 0


def run_check_config(args: argparse.Namespace) -> int:
    settings = config.load(args.config)
    chains = ", ".join(f"{c.name} ({len(c.targets)} targets)" for c in settings.chains)
    print(f"{args.config}: OK: {len(settings.chains)} chains: {chains or 'none'}; "
          f"store {_store_kind(settings.store.url)}")
    for chain in settings.chains:
        for target in chain.targets:
            policy = target.policy
            pausing = (f"pauses after {policy.pause_after} failures in a row, probed every "
                       f"{policy.probe_interval:g} s" if policy.pause_after else "never paused")
            print(f"  {chain.name}/{target.name}: {schedule.describe(policy)}; {pausing}")
    return 0


def _store_kind(url: str) -> str:
    return url.split(":", 1)[0]
