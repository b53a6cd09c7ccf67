"""The `relay` command: serving, checking the config, and the client commands."""

from relay.cli.main import main

__all__ = ["main"]
