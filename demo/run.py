"""`make demo`: relay with demo/relay.toml, two example targets, and Docker Hub's example push
walking the chain live. Ctrl-C stops everything.

    python demo/run.py [--ports 8080,9001,9002] [--data DIR] [--once]

--ports moves relay and the two targets; --data is where relay keeps its database and log
(demo/data by default); --once stops everything when the push's chain has ended and exits
with `relay send`'s code.
"""

from __future__ import annotations

import argparse
import contextlib
import functools
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Callable
from pathlib import Path

HERE = Path(__file__).resolve().parent
DEFAULT_PORTS = (8080, 9001, 9002)
ADMIN_TOKEN = "demo-admin-token-0123456789"
START_SECONDS = 30.0
STOP_SECONDS = 20.0


def relay_command(*args: str) -> list[str]:
    return [sys.executable, "-m", "relay", *args]


def effective_config(ports: tuple[int, int, int]) -> str:
    """demo/relay.toml with its three ports moved, if asked."""
    text = (HERE / "relay.toml").read_text()
    for default, port in zip(DEFAULT_PORTS, ports, strict=True):
        text = text.replace(f":{default}", f":{port}").replace(f"port = {default}",
                                                                  f"port = {port}")
    return text


def wait_for(what: str, ready: Callable[[], bool],
             children: dict[str, subprocess.Popen[bytes]], logs: Path) -> None:
    deadline = time.monotonic() + START_SECONDS
    while not ready():
        for name, child in children.items():
            if child.poll() is not None:
                raise SystemExit(f"demo: {name} exited with {child.returncode} while "
                                 f"{what} was starting; see {logs} and the lines above")
        if time.monotonic() > deadline:
            raise SystemExit(f"demo: {what} did not start within {START_SECONDS:g} s")
        time.sleep(0.1)


def listening(port: int) -> bool:
    with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), 0.5):
        return True
    return False


def healthy(url: str) -> bool:
    try:
        with urllib.request.urlopen(f"{url}/healthz", timeout=1) as answer:  # noqa: S310
            return bool(answer.status == 200)
    except OSError:
        return False


def stop(children: dict[str, subprocess.Popen[bytes]]) -> None:
    """SIGTERM to all at once, then one deadline for all (not one each, which adds up): a
    process still running then is killed, and named, so that a slow stop is never silent."""
    for child in children.values():
        if child.poll() is None:
            child.send_signal(signal.SIGTERM)
    deadline = time.monotonic() + STOP_SECONDS
    for name, child in children.items():
        try:
            child.wait(max(0.0, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            print(f"demo: {name} (pid {child.pid}) did not stop within {STOP_SECONDS:g} s "
                  "of SIGTERM; killing it", flush=True)
            child.kill()
            child.wait()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--ports", default=",".join(map(str, DEFAULT_PORTS)))
    parser.add_argument("--data", type=Path, default=HERE / "data")
    parser.add_argument("--once", action="store_true")
    args = parser.parse_args()
    ports = tuple(int(p) for p in args.ports.split(","))
    if len(ports) != 3:
        parser.error("--ports needs three ports: relay, unit-tests, deploy")
    relay_port, ci_port, deploy_port = ports
    for port in ports:
        if listening(port):
            raise SystemExit(f"demo: port {port} is taken; stop what listens there or use "
                             "--ports")
    args.data.mkdir(parents=True, exist_ok=True)
    config = args.data / "relay.toml"
    config.write_text(effective_config((relay_port, ci_port, deploy_port)))
    url = f"http://127.0.0.1:{relay_port}"
    log = args.data / "relay.log"

    # Own sessions: Ctrl-C reaches this script alone, which then stops them in order.
    children: dict[str, subprocess.Popen[bytes]] = {}
    try:
        with open(log, "ab") as relay_log:
            children["relay"] = subprocess.Popen(
                relay_command("serve", "--config", str(config)), cwd=args.data,
                stdout=relay_log, stderr=relay_log, start_new_session=True)
        for name, port, delay in (("ci", ci_port, "1"), ("deployer", deploy_port, "2")):
            children[f"the {name} target"] = subprocess.Popen(
                relay_command("example-target", "--port", str(port), "--name", name,
                              "--delay", delay), start_new_session=True)
        wait_for("relay", lambda: healthy(url), children, log)
        for port in (ci_port, deploy_port):
            wait_for(f"the example target on port {port}", functools.partial(listening, port),
                     children, log)
        print(f"\ndemo: relay serves {url} (log: {log}); sending Docker Hub's example push "
              "to chain demo:\n", flush=True)
        sent = subprocess.run(relay_command("send", "--config", str(config), "--chain",
                                            "demo"), check=False)
        if args.once:
            return sent.returncode
        print(f"\ndemo: open {url}/ui and log in with {ADMIN_TOKEN}\n"
              f"demo: or try: .venv/bin/relay history --config {config}\n"
              f"demo:         .venv/bin/relay send --config {config} --chain demo\n"
              f"demo: metrics: {url}/metrics\n"
              "demo: Ctrl-C stops everything.", flush=True)
        while all(child.poll() is None for child in children.values()):
            time.sleep(0.5)
        return 1
    except KeyboardInterrupt:
        print("\ndemo: stopping", flush=True)
        return 0
    finally:
        stop(children)


if __name__ == "__main__":
    # Explicitly, SIGINT too: a process started from a shell's background job inherits
    # SIGINT ignored, and Python then leaves it so (Ctrl-C would stop nothing).
    signal.signal(signal.SIGINT, signal.default_int_handler)
    signal.signal(signal.SIGTERM, signal.default_int_handler)
    sys.exit(main())
