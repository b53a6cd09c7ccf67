"""`make demo` (demo/run.py): relay, two example targets and the seed push, in one command."""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import socket
import subprocess
import sys
from pathlib import Path

import aiohttp
from support import free_socket, wait_until

DEMO = Path(__file__).resolve().parents[2] / "demo" / "run.py"


def _listening(port: int) -> bool:
    with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), 0.5):
        return True
    return False


def _ignore_sigint() -> None:
    signal.signal(signal.SIGINT, signal.SIG_IGN)


async def _stopped(demo: asyncio.subprocess.Process, output: list[str]) -> str:
    """What the demo printed after Ctrl-C, once it exited; if it does not, which of its
    processes are still there (each of them holds the pipe open)."""
    assert demo.stdout is not None
    rest: list[str] = []
    try:
        async with asyncio.timeout(60):
            while line := await demo.stdout.readline():
                rest.append(line.decode())
            await demo.wait()
    except TimeoutError:
        running = subprocess.run(["ps", "-eo", "pid,ppid,stat,etime,args"], check=False,
                                 capture_output=True, text=True).stdout
        demo.kill()
        for process in running.splitlines()[1:]:
            pid, ppid = process.split()[:2]
            if int(ppid) == demo.pid:  # its children have sessions of their own
                os.kill(int(pid), signal.SIGKILL)
        raise AssertionError(
            "the demo did not stop within 60 s of Ctrl-C; it printed:\n"
            + "".join(output + rest) + "\nrelay processes:\n"
            + "\n".join(p for p in running.splitlines() if "relay" in p)) from None
    return "".join(rest)


async def test_the_demo_walks_the_chain_and_stops_everything_on_ctrl_c(tmp_path: Path) -> None:
    await _ctrl_c_stops_the_demo(tmp_path, ignore_sigint=False)


async def test_ctrl_c_stops_the_demo_started_from_a_background_job(tmp_path: Path) -> None:
    """A shell starts background jobs with SIGINT ignored, and children inherit that: how a
    full `make test &` once saw the demo not stop."""
    await _ctrl_c_stops_the_demo(tmp_path, ignore_sigint=True)


async def _ctrl_c_stops_the_demo(tmp_path: Path, ignore_sigint: bool) -> None:
    sockets = [free_socket() for _ in range(3)]
    ports = [s.getsockname()[1] for s in sockets]
    for sock in sockets:
        sock.close()
    demo = await asyncio.create_subprocess_exec(
        sys.executable, str(DEMO), "--ports", ",".join(map(str, ports)), "--data",
        str(tmp_path), stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT,
        preexec_fn=_ignore_sigint if ignore_sigint else None)
    lines = demo.stdout
    assert lines is not None
    output: list[str] = []
    try:
        async def told_to_stop() -> bool:
            line = (await asyncio.wait_for(lines.readline(), 60)).decode()
            assert line, "the demo ended early:\n" + "".join(output)
            output.append(line)
            return bool(line.startswith("demo: Ctrl-C stops everything."))

        await wait_until(told_to_stop, timeout=90, what="the demo to be ready")
        text = "".join(output)
        assert "success: all 2 steps succeeded" in text
        assert "ci: run 1: called back success (relay answered 200)" in text
        assert f"demo: open http://127.0.0.1:{ports[0]}/ui" in text

        async with aiohttp.ClientSession() as http:
            async with http.get(f"http://127.0.0.1:{ports[0]}/ui") as page:
                assert page.status == 200
            async with http.get(f"http://127.0.0.1:{ports[0]}/metrics") as metrics:
                assert ('relay_pushes_total{chain="demo",outcome="accepted"} 1.0'
                        in await metrics.text())
        assert (tmp_path / "relay.db").exists()
    finally:
        demo.send_signal(signal.SIGINT)  # what Ctrl-C does
        rest = await _stopped(demo, output)
    assert demo.returncode == 0, rest
    assert rest.startswith("\ndemo: stopping")
    assert "did not stop" not in rest
    assert not any(_listening(port) for port in ports)
