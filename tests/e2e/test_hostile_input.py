"""Hostile input at the edge: probing for hooks, deep nesting, short tokens."""

from __future__ import annotations

import gzip
import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from support import (
    CHAIN_TOKEN,
    SEED_TAG_PUSH,
    Relay,
    StartRelay,
    StartTarget,
    exchange,
    minimal_config,
    nested_push,
    raw_request,
)

from relay import config, errors

OTHER_TOKEN = "other-chain-token-0123456789abc"


@pytest.fixture
async def relay(start_relay: StartRelay, start_target: StartTarget) -> Relay:
    target = await start_target()
    return await start_relay(chains=[
        {"name": "main", "targets": [{"name": "ci", "url": target.url}]},
        {"name": "other", "token": OTHER_TOKEN, "targets": [{"name": "ci", "url": target.url}]},
    ])


def _without_date(answer: bytes) -> bytes:
    head, _, body = answer.partition(b"\r\n\r\n")
    lines = [line for line in head.split(b"\r\n") if not line.lower().startswith(b"date:")]
    return b"\r\n".join(lines) + b"\r\n\r\n" + body


async def test_every_wrong_way_into_a_hook_gets_the_same_bytes(relay: Relay) -> None:
    payload = json.dumps(SEED_TAG_PUSH).encode()
    probes = [
        raw_request("POST", f"/hooks/nope/{CHAIN_TOKEN}", body=payload),
        raw_request("POST", "/hooks/main/wrong-token-0123456789", body=payload),
        raw_request("POST", f"/hooks/main/{OTHER_TOKEN}", body=payload),
        raw_request("POST", f"/hooks/main/{CHAIN_TOKEN[:-1]}", body=payload),
        raw_request("POST", f"/hooks/nope/{CHAIN_TOKEN}", body=b"{not json"),
        raw_request("POST", "/hooks/main", body=payload),
        raw_request("POST", "/hooks/nope", body=payload,
                    headers={"Authorization": f"Bearer {CHAIN_TOKEN}"}),
        raw_request("POST", "/hooks/main", body=payload,
                    headers={"Authorization": f"Bearer {OTHER_TOKEN}"}),
        raw_request("POST", "/hooks/main", body=payload,
                    headers={"Authorization": f"Basic {CHAIN_TOKEN}"}),
    ]

    answers = {_without_date(await exchange(relay.url, probe)) for probe in probes}

    assert len(answers) == 1, answers
    (answer,) = answers
    assert answer.startswith(b"HTTP/1.1 404 Not Found\r\n")
    assert b"Content-Type: application/json" in answer
    assert answer.endswith(b'{"error":"no hook at this URL","details":[]}')
    assert b"WWW-Authenticate" not in answer
    assert (await relay.get("/history"))[1]["items"] == []


@pytest.mark.parametrize("depth", [65, 500, 5000])
async def test_nesting_deeper_than_the_cap_is_400(relay: Relay, depth: int) -> None:
    status, answer = await relay.post(relay.hook_url().removeprefix(relay.url),
                                      data=nested_push(depth + 1))

    assert status == 400
    assert answer["error"] == "the body is nested deeper than 64 levels"
    assert (await relay.get("/history"))[1]["items"] == []


async def test_nesting_at_the_cap_is_fine(relay: Relay) -> None:
    status, answer = await relay.post(relay.hook_url().removeprefix(relay.url),
                                      data=nested_push(64))

    assert status == 202, answer


@pytest.mark.parametrize("command", ["check-config", "serve"])
@pytest.mark.parametrize(("key", "line"), [
    ("server.admin_token", 'admin_token = "short-admin"'),
    ("chain[0].token", 'token = "short-chain"'),
    ("chain[0].token", 'token = ""'),
])
def test_short_tokens_stop_relay_before_it_serves(tmp_path: Path, command: str, key: str,
                                                  line: str) -> None:
    text = minimal_config(server="port = 0") + f'\n[store]\nurl = "sqlite:///{tmp_path}/relay.db"\n'
    field = line.split(" = ")[0]
    text = "\n".join(line if row.startswith(f"{field} = ") else row
                     for row in text.splitlines())
    path = tmp_path / "relay.toml"
    path.write_text(text)

    result = subprocess.run([sys.executable, "-m", "relay", command, "--config", str(path)],
                            capture_output=True, text=True, timeout=30)

    assert result.returncode == 2
    assert f"{key}: must be at least 16 characters long" in result.stderr
    assert not (tmp_path / "relay.db").exists()


NEW_TOKEN = "new-chain-token-after-rotation-01"


async def test_a_chain_accepts_its_old_and_new_token_during_a_rotation(
        start_relay: StartRelay, start_target: StartTarget) -> None:
    target = await start_target()
    relay = await start_relay(chains=[{"name": "main", "token": [NEW_TOKEN, CHAIN_TOKEN],
                                       "targets": [{"name": "ci", "url": target.url}]}])

    for token in (NEW_TOKEN, CHAIN_TOKEN):
        assert (await relay.post(f"/hooks/main/{token}", SEED_TAG_PUSH))[0] == 202
        assert (await relay.post("/hooks/main", SEED_TAG_PUSH,
                                 headers={"Authorization": f"Bearer {token}"}))[0] == 202
    assert (await relay.post(f"/hooks/main/{OTHER_TOKEN}", SEED_TAG_PUSH))[0] == 404
    assert len((await relay.get("/history"))[1]["items"]) == 4


def test_every_token_of_a_rotation_is_checked_and_secret() -> None:
    text = """
[server]
admin_token = "admin-token-0123456789"
[[chain]]
name = "main"
token = ["new-token-0123456789", "${OLD_TOKEN}"]
  [[chain.target]]
  name = "ci"
  url = "http://127.0.0.1:9001/hook"
"""
    settings = config.parse(text, environ={"OLD_TOKEN": "old-token-0123456789"})

    assert settings.chains[0].tokens == ("new-token-0123456789", "old-token-0123456789")
    assert settings.chains[0].token == "new-token-0123456789"
    assert {"new-token-0123456789", "old-token-0123456789"} <= settings.secrets
    with pytest.raises(errors.ConfigError, match=r"chain\[0\]\.token\[1\]: must be at least 16"):
        config.parse(text, environ={"OLD_TOKEN": "short"})
    with pytest.raises(errors.ConfigError, match=r"chain\[0\]\.token: must name at least one"):
        config.parse(text.replace('["new-token-0123456789", "${OLD_TOKEN}"]', "[]"))


async def test_a_body_that_does_not_decode_as_its_content_encoding_is_400(relay: Relay) -> None:
    body = json.dumps(SEED_TAG_PUSH).encode()
    packed = gzip.compress(body)

    async def post(data: bytes) -> tuple[int, Any]:
        return await relay.post(f"/hooks/main/{CHAIN_TOKEN}", data=data,
                                headers={"Content-Encoding": "gzip", "Connection": "close"})

    not_gzip, half_gzip, gzipped = await post(body), await post(packed[:-12]), await post(packed)

    assert not_gzip == (400, {"error": "the body does not decode as its Content-Encoding says "
                                       "(gzip)", "details": []})
    assert half_gzip[0] == 400
    assert set(half_gzip[1]) == {"error", "details"}
    assert gzipped[0] == 202
    _, listing = await relay.get("/history")
    assert [item["id"] for item in listing["items"]] == [gzipped[1]["id"]]
