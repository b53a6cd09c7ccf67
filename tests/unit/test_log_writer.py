"""Log lines to a file: JSON lines, written once per turn of the event loop (logs.TurnWriter)."""

from __future__ import annotations

import asyncio
import json
import threading
from pathlib import Path

from relay import logs


async def test_lines_logged_in_one_turn_are_written_at_the_next(tmp_path: Path) -> None:
    path = tmp_path / "relay.log"
    with open(path, "wb") as file:
        writer = logs.TurnWriter(file)
        writer.info(b'{"event":"one"}')
        writer.info(b'{"event":"two"}')
        assert path.read_bytes() == b""

        await asyncio.sleep(0)
        assert path.read_bytes() == b'{"event":"one"}\n{"event":"two"}\n'


async def test_a_line_from_another_thread_is_written_at_once_after_the_held_ones(
        tmp_path: Path) -> None:
    path = tmp_path / "relay.log"
    with open(path, "wb") as file:
        writer = logs.TurnWriter(file)
        writer.info(b"held")
        thread = threading.Thread(target=writer.info, args=(b"from a thread",))
        thread.start()
        thread.join()
        assert path.read_bytes() == b"held\nfrom a thread\n"
        await asyncio.sleep(0)
        assert path.read_bytes() == b"held\nfrom a thread\n"


def test_without_a_running_loop_a_line_is_written_at_once(tmp_path: Path) -> None:
    path = tmp_path / "relay.log"
    with open(path, "wb") as file:
        writer = logs.TurnWriter(file)
        writer.info(b"at once")
        assert path.read_bytes() == b"at once\n"


async def test_a_log_file_gets_relays_redacted_json_lines(tmp_path: Path) -> None:
    path = tmp_path / "relay.log"
    secret = "file-secret-0123456789"
    with open(path, "w") as stream:
        logs.configure([secret], stream=stream, json=True, level="info")
        logs.get().info("push.accepted", chain="main", note=f"token {secret}")
        logs.get().debug("below the level")
        await asyncio.sleep(0)
        lines = [json.loads(line) for line in path.read_text().splitlines()]
    assert [(line["event"], line["chain"], line["note"], line["level"]) for line in lines] == [
        ("push.accepted", "main", "token [redacted]", "info")]
    assert lines[0]["timestamp"].endswith("Z")
