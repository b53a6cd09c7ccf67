"""The client commands against a running relay: history, show, redeliver, send, healthcheck;
and `relay example-target`, the CI stand-in they are tried with."""

from __future__ import annotations

import asyncio
import json
import os
import shutil
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from support import (
    ADMIN_TOKEN,
    CHAIN_TOKEN,
    Relay,
    Reply,
    StartRelay,
    StartTarget,
    free_socket,
    seed_push,
)

from relay import models
from relay.cli import seed

# The commands speak HTTP to relay; which store is behind it does not matter here.
pytestmark = pytest.mark.parametrize("store_url", ["sqlite"], indirect=True)


@dataclass
class Run:
    code: int
    out: str
    err: str


async def relay_cli(*args: str, env: dict[str, str] | None = None, stdin: bytes = b"",
                    cwd: Path | None = None) -> Run:
    """`python -m relay ARGS` in a subprocess, without blocking the relay in this loop; in
    an empty folder unless `cwd` is given (the commands read the ./relay.toml they find)."""
    base = {k: v for k, v in os.environ.items()
            if k not in ("RELAY_URL", "RELAY_ADMIN_TOKEN", "RELAY_CHAIN_TOKEN")}
    with tempfile.TemporaryDirectory(prefix="relay-cli-") as empty:
        process = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "relay", *args, env={**base, **(env or {})},
            cwd=cwd or empty, stdin=asyncio.subprocess.PIPE,
            stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE)
        out, err = await asyncio.wait_for(process.communicate(stdin), 60)
    assert process.returncode is not None
    return Run(process.returncode, out.decode(), err.decode())


def admin(relay: Relay) -> dict[str, str]:
    return {"RELAY_URL": relay.url, "RELAY_ADMIN_TOKEN": ADMIN_TOKEN}


async def _two_step_relay(start_relay: StartRelay, start_target: StartTarget,
                          second: Reply | None = None) -> Relay:
    ci = await start_target(default=Reply(description="387 tests PASSED"))
    deploy = await start_target(default=second or Reply(description="deployed"))
    return await start_relay(chains=[{"name": "main", "targets": [
        {"name": "unit-tests", "url": ci.url}, {"name": "deploy", "url": deploy.url}]}],
        upstream={"allowed_hosts": []})


async def test_send_posts_the_seed_push_and_follows_it_to_success(
        start_relay: StartRelay, start_target: StartTarget) -> None:
    relay = await _two_step_relay(start_relay, start_target)

    run = await relay_cli("send", "--chain", "main",
                          env={**admin(relay), "RELAY_CHAIN_TOKEN": CHAIN_TOKEN})

    assert run.code == 0, run
    lines = run.out.splitlines()
    delivery_id = lines[0].split()[1]
    assert lines[0] == f"delivery {delivery_id} accepted by chain main"
    assert "  1 unit-tests       callback success: 387 tests PASSED" in lines
    assert lines.index("  1 unit-tests       success") < lines.index(
        "  2 deploy           success")
    assert lines[-1] == "success: all 2 steps succeeded"
    stored = await relay.delivery(delivery_id)
    assert stored["payload"] == seed.seed_push()  # DESIGN §1's example, as sent


async def test_send_exit_codes_say_how_the_chain_ended(start_relay: StartRelay,
                                                       start_target: StartTarget,
                                                       tmp_path: Path) -> None:
    failing = await _two_step_relay(start_relay, start_target,
                                    Reply(callback="failure", description="2 tests FAILED"))
    env = {**admin(failing), "RELAY_CHAIN_TOKEN": CHAIN_TOKEN}
    run = await relay_cli("send", "--chain", "main", env=env)
    assert run.code == 3
    assert run.out.splitlines()[-1] == ("failure: step 2 of 2 (deploy) answered failure: "
                                        "2 tests FAILED")

    payload = seed_push()
    payload["push_data"]["tag"] = "v2.0.1"
    (tmp_path / "push.json").write_text(json.dumps(payload))
    run = await relay_cli("send", "--chain", "main", "--no-follow", "--json",
                          str(tmp_path / "push.json"), env=env)
    assert run.code == 0
    assert (await failing.delivery(json.loads(run.out)["id"]))["tag"] == "v2.0.1"

    run = await relay_cli("send", "--chain", "main", "-", env=env,
                          stdin=b'{"push_data": {"tag": "x"}}')
    assert run.code == 1
    assert run.err.startswith("relay: the payload is not a valid Docker Hub push")
    assert "(422)" in run.err


async def test_send_takes_the_chain_token_from_the_config(start_relay: StartRelay,
                                                          start_target: StartTarget,
                                                          tmp_path: Path) -> None:
    relay = await _two_step_relay(start_relay, start_target)
    config_file = next(tmp_path.glob("relay-*.toml"))  # the relay's own config

    run = await relay_cli("send", "--config", str(config_file), "--chain", "main")
    assert run.code == 0, run
    assert run.out.splitlines()[-1] == "success: all 2 steps succeeded"

    run = await relay_cli("send", "--config", str(config_file), "--chain", "nope")
    assert (run.code, run.err) == (2, f"relay: configuration error: {config_file} has no "
                                      "chain 'nope' (it has: main)\n")
    del relay


async def test_history_and_show_as_tables_and_as_json(start_relay: StartRelay,
                                                      start_target: StartTarget) -> None:
    hostile = "\x1b[2J\x1b[31mgotcha"
    ci = await start_target(default=Reply(description=hostile))
    relay = await start_relay(ci, upstream={"allowed_hosts": []})
    first = (await relay.wait_for(await relay.push()))["id"]
    other = seed_push(tag="v9")
    second = (await relay.wait_for(await relay.push(other)))["id"]
    for delivery_id in (first, second):  # the answer to relay's POST may come after the end
        await relay.wait_for_attempts(delivery_id, 0, 1)

    run = await relay_cli("history", env=admin(relay))
    assert run.code == 0, run
    rows = [line for line in run.out.splitlines() if line[:26] in (first, second)]
    assert [row[:26] for row in rows] == [second, first]
    assert "svendowideit/testhook:v9" in rows[0]
    assert "success" in rows[0]

    run = await relay_cli("history", "--json", "--tag", "latest", "--limit", "5",
                          env=admin(relay))
    assert [item["id"] for item in json.loads(run.out)["items"]] == [first]

    run = await relay_cli("show", first, env=admin(relay))
    assert run.code == 0
    assert f"Delivery {first}  success" in run.out
    assert "\x1b" not in run.out  # the callback's escape sequences are shown, not obeyed
    assert "\\x1b[2J\\x1b[31mgotcha" in run.out
    assert "1: 200 in" in run.out

    run = await relay_cli("show", "--json", first, env=admin(relay))
    assert json.loads(run.out) == await relay.delivery(first)


async def test_redeliver_makes_a_new_delivery(start_relay: StartRelay,
                                              start_target: StartTarget) -> None:
    relay = await start_relay(await start_target(), upstream={"allowed_hosts": []})
    first = (await relay.wait_for(await relay.push()))["id"]

    run = await relay_cli("redeliver", first, "--follow", env=admin(relay))

    assert run.code == 0, run
    again = run.out.split()[3]
    assert run.out.startswith(f"redelivered {first} as {again}\n")
    assert run.out.splitlines()[-1] == "success: all 1 steps succeeded"
    assert (await relay.delivery(again))["redelivery_of"] == first


async def test_errors_are_one_line_with_an_exit_code(start_relay: StartRelay,
                                                     start_target: StartTarget) -> None:
    relay = await start_relay(await start_target())
    down = free_socket()  # bound, not listening
    nowhere = f"http://127.0.0.1:{down.getsockname()[1]}"

    cases: list[tuple[tuple[str, ...], dict[str, str], int, str]] = [
        (("history", "--url", nowhere), {"RELAY_ADMIN_TOKEN": ADMIN_TOKEN}, 1,
         f"relay: cannot reach relay at {nowhere}: connection refused"),
        (("history",), {**admin(relay), "RELAY_ADMIN_TOKEN": "wrong-admin-token-0123"}, 1,
         "relay: relay refused the admin token (401): set RELAY_ADMIN_TOKEN to its [server]"
         " admin_token (this needs Authorization: Bearer <admin_token>)"),
        (("show", "06h0n515l6s04bbg7jp958vrf4"), admin(relay), 1,
         "relay: no delivery has id '06h0n515l6s04bbg7jp958vrf4' (404)"),
        (("redeliver", "nope"), admin(relay), 1, "relay: no delivery has id 'nope' (404)"),
        (("history",), {"RELAY_URL": relay.url}, 2,
         "relay: configuration error: no admin token: set RELAY_ADMIN_TOKEN to relay's "
         "[server] admin_token (or give --config relay.toml)"),
        (("send", "--chain", "main", "--token", "wrong-chain-token-0123"), admin(relay), 1,
         "relay: relay has no such chain, or the chain token is wrong (404)"),
        (("send", "--chain", "main"), admin(relay), 2,
         "relay: configuration error: no token for chain main: give --token, set "
         "RELAY_CHAIN_TOKEN, or give --config relay.toml"),
        (("send", "--chain", "main", "--no-follow"), {"RELAY_URL": relay.url,
                                                      "RELAY_CHAIN_TOKEN": CHAIN_TOKEN}, 0,
         ""),
        (("history", "--limit", "0"), admin(relay), 2,
         "relay: configuration error: --limit must be from 1 to 500"),
    ]
    for args, env, code, error in cases:
        run = await relay_cli(*args, env=env)
        assert (run.code, run.err.rstrip("\n")) == (code, error), args
    down.close()


async def test_healthcheck(start_relay: StartRelay, start_target: StartTarget) -> None:
    relay = await start_relay(await start_target())

    assert (await relay_cli("healthcheck", "--url", relay.url)).code == 0
    assert (await relay_cli("healthcheck", "--ready", env={"RELAY_URL": relay.url})).code == 0
    with free_socket() as down:
        run = await relay_cli("healthcheck", "--url",
                              f"http://127.0.0.1:{down.getsockname()[1]}")
    assert run.code == 1
    assert run.err.startswith("relay: cannot reach relay at")


async def test_example_target_answers_and_calls_back(start_relay: StartRelay,
                                                     start_target: StartTarget) -> None:
    with free_socket() as sock:
        port = sock.getsockname()[1]
    target = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "relay", "example-target", "--port", str(port), "--state",
        "failure", "--delay", "0.2", "--name", "acme-ci", stdout=asyncio.subprocess.PIPE)
    try:
        assert target.stdout is not None
        first = await asyncio.wait_for(target.stdout.readline(), 30)
        assert first.decode().startswith(f"acme-ci: listening on http://127.0.0.1:{port}/")
        relay = await start_relay({"url": f"http://127.0.0.1:{port}/hook",
                                   "backoff_initial": 0.1},
                                  upstream={"allowed_hosts": []})
        done = await relay.wait_for(await relay.push(), timeout=20)

        assert done["state"] == "failure"
        answered: dict[str, Any] = done["steps"][0]["callback"]
        assert answered["description"] == "acme-ci: 2 of 387 tests FAILED"
        assert answered["context"] == "relay example-target"
        assert answered["target_url"] == f"http://127.0.0.1:{port}/runs/1"
        async with relay.http.get(answered["target_url"]) as page:
            text = await page.text()
        assert "image:      svendowideit/testhook:latest" in text
        assert "result:     failure" in text
        for unknown in ("2", "%C2%B2"):  # no such run; a superscript two is no number
            async with relay.http.get(f"http://127.0.0.1:{port}/runs/{unknown}") as page:
                assert page.status == 404
    finally:
        target.terminate()
        out, _ = await target.communicate()
    assert "acme-ci: run 1: called back failure (relay answered 200)" in out.decode()


async def test_send_exits_5_in_one_line_when_the_chain_ignores_the_push(
        start_relay: StartRelay, start_target: StartTarget, tmp_path: Path) -> None:
    ci = await start_target()
    relay = await start_relay(chains=[{"name": "main", "repositories": ["acme/*"],
                                       "targets": [{"name": "ci", "url": ci.url}]}],
                              upstream={"allowed_hosts": []})
    env = {**admin(relay), "RELAY_CHAIN_TOKEN": CHAIN_TOKEN}
    why = ("repository svendowideit/testhook matches none of chain main's repositories "
           "(acme/*)")

    for follow in ((), ("--no-follow",)):
        run = await relay_cli("send", "--chain", "main", *follow, env=env)
        assert (run.code, run.out, run.err) == (5, f"ignored: {why}\n", ""), follow
    run = await relay_cli("send", "--chain", "main", "--no-follow", "--json", env=env)
    assert (run.code, json.loads(run.out)) == (5, {"ignored": why})
    assert (await relay.get("/history"))[1]["items"] == []
    assert ci.requests == []

    # A push of a repository the filter takes goes through the same chain.
    payload = seed_push()
    payload["repository"]["repo_name"] = "acme/app"
    (tmp_path / "push.json").write_text(json.dumps(payload))
    run = await relay_cli("send", "--chain", "main", str(tmp_path / "push.json"), env=env)
    assert run.code == 0, run
    assert run.out.splitlines()[-1] == "success: all 1 steps succeeded"
    assert [r.json["repository"]["repo_name"] for r in ci.requests] == ["acme/app"]


async def test_the_commands_take_relay_toml_from_the_working_folder(
        start_relay: StartRelay, start_target: StartTarget, tmp_path: Path) -> None:
    relay = await start_relay(chains=[
        {"name": "main", "targets": [{"name": "ci", "url": (await start_target()).url}]},
        {"name": "other", "targets": [{"name": "a", "url": "http://127.0.0.1:9/a"},
                                      {"name": "b", "url": "http://127.0.0.1:9/b"}]}])
    folder = tmp_path / "here"
    folder.mkdir()
    shutil.copy(relay.config_path, folder / "relay.toml")  # as `make run` leaves it

    sent = await relay_cli("send", "--chain", "main", cwd=folder)
    listed = await relay_cli("history", "--json", cwd=folder)
    chains = await relay_cli("chains", cwd=folder)
    as_json = await relay_cli("chains", "--json", cwd=folder)

    assert sent.code == 0, sent
    assert sent.out.splitlines()[-1] == "success: all 1 steps succeeded"
    assert [item["chain"] for item in json.loads(listed.out)["items"]] == ["main"]
    assert chains.code == 0, chains
    lines = chains.out.splitlines()
    assert lines[0].split() == ["CHAIN", "SERVICE", "UUID", "TARGETS"]
    assert lines[1].split() == ["main", models.service_uuid("main"), "ci"]
    assert lines[2].split() == ["other", models.service_uuid("other"), "a,", "b"]
    assert [(s["name"], s["uuid"]) for s in json.loads(as_json.out)] == [
        ("main", models.service_uuid("main")), ("other", models.service_uuid("other"))]
    # Elsewhere, with no relay.toml, the token must come from somewhere else.
    assert (await relay_cli("chains", env={"RELAY_URL": relay.url})).code == 2


async def test_operations_commands_pause_redeliver_in_bulk_and_prune(
        start_relay: StartRelay, start_target: StartTarget) -> None:
    relay = await _two_step_relay(start_relay, start_target,
                                  second=Reply(status=400, callback=None))
    failed = await relay.wait_for(await relay.push())
    assert failed["state"] == "error"
    shown = await relay_cli("show", failed["id"], env=admin(relay))
    assert '{"ok": false}' in shown.out  # what the target answered

    paused = await relay_cli("pause", "main", "deploy", env=admin(relay))
    assert paused.code == 0, paused.err
    assert "paused by operator" in paused.out
    listed = await relay_cli("targets", "--json", env=admin(relay))
    states = {t["target"]: t["state"] for t in json.loads(listed.out)["items"]}
    assert states == {"unit-tests": "active", "deploy": "paused"}
    assert (await relay_cli("resume", "main", "deploy", env=admin(relay))).code == 0

    dry = await relay_cli("redeliver", "--state", "error", "--since", "1h", "--dry-run",
                          env=admin(relay))
    assert (dry.code, dry.out.strip()) == (0, "1 deliveries match (nothing redelivered: "
                                              "--dry-run)")
    again = await relay_cli("redeliver", "--state", "error", "--since", "1h",
                            "--from-step", "failed", "--json", env=admin(relay))
    answer = json.loads(again.out)
    assert answer["count"] == 1
    redone = await relay.wait_for(answer["ids"][0])
    assert [s["state"] for s in redone["steps"]] == ["skipped", "error"]
    nothing = await relay_cli("redeliver", "--chain", "main", env=admin(relay))
    assert nothing.code == 2
    assert "--state and/or --since" in nothing.err

    pruned = await relay_cli("prune", "--older-than", "7d", "--dry-run", env=admin(relay))
    assert (pruned.code, pruned.out.strip()) == (0, "would delete 0 deliveries that ended "
                                                    "more than 7d ago")
