"""What ships: the container image's Dockerfile, and a wheel that serves from anywhere."""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
import sysconfig
import zipfile
from pathlib import Path

import aiohttp
from support import ADMIN_TOKEN, CHAIN_TOKEN, SEED_TAG_PUSH, free_socket, render_config, wait_until

ROOT = Path(__file__).resolve().parents[2]


def dockerfile_instructions() -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) of the final stage, continuation lines joined."""
    text = (ROOT / "Dockerfile").read_text().replace("\\\n", " ")
    instructions = []
    for line in text.splitlines():
        line = line.strip()
        if line and not line.startswith("#"):
            word, _, rest = line.partition(" ")
            instructions.append((word.upper(), " ".join(rest.split())))
    last_from = max(i for i, (word, _) in enumerate(instructions) if word == "FROM")
    return instructions[last_from:]


def test_the_image_runs_relay_serve_as_a_non_root_user_with_a_data_volume() -> None:
    final = dockerfile_instructions()
    found: dict[str, list[str]] = {}
    for word, rest in final:
        found.setdefault(word, []).append(rest)

    assert found["FROM"][0].startswith("python:3.12-slim")
    user = found["USER"][-1].split(":")[0]
    assert user not in ("root", "0")
    assert json.loads(found["ENTRYPOINT"][-1]) == ["relay", "serve"]
    assert json.loads(found["CMD"][-1]) == ["--config", "/etc/relay/relay.toml"]
    # The default store url sqlite:///data/relay.db is relative to the working directory.
    workdir = found["WORKDIR"][-1]
    assert json.loads(found["VOLUME"][-1]) == [f"{workdir}/data"]
    healthcheck = found["HEALTHCHECK"][-1]
    probe = json.loads(healthcheck.split(" CMD ", 1)[1])
    assert probe[:2] == ["relay", "healthcheck"]
    assert "curl" not in healthcheck
    assert "wget" not in healthcheck
    assert found["EXPOSE"] == ["8080"]
    ignored = (ROOT / ".dockerignore").read_text().split()
    assert {".venv", ".git", "data"} <= set(ignored)


async def test_the_wheel_serves_from_another_directory(tmp_path: Path) -> None:
    # Build the wheel offline and install it alone into a fresh venv; its dependencies come
    # from this venv's site-packages through a .pth file (nothing is downloaded). The
    # editable install of the work tree is not visible there, so only the wheel can answer.
    subprocess.run([sys.executable, "-m", "pip", "wheel", "--quiet", "--no-deps",
                    "--no-build-isolation", "--wheel-dir", str(tmp_path / "dist"), str(ROOT)],
                   check=True, capture_output=True)
    wheel = next((tmp_path / "dist").glob("relay-*.whl"))
    names = set(zipfile.ZipFile(wheel).namelist())
    assert {"relay/_schemas/push.json", "relay/_schemas/callback.json",
            "relay/http/ui/static/index.html", "relay/http/ui/static/app.js"} <= names

    venv = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(venv)], check=True)
    fresh = venv / "bin" / "python"
    site = subprocess.run([str(fresh), "-c", "import sysconfig; print(sysconfig.get_paths()"
                           "['purelib'])"], check=True, capture_output=True, text=True)
    Path(site.stdout.strip(), "deps.pth").write_text(sysconfig.get_paths()["purelib"] + "\n")
    subprocess.run([sys.executable, "-m", "pip", "--python", str(fresh), "install", "--quiet",
                    "--no-deps", str(wheel)], check=True, capture_output=True)

    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    where = subprocess.run([str(fresh), "-c", "import relay; print(relay.__file__)"],
                           cwd=elsewhere, check=True, capture_output=True, text=True)
    assert where.stdout.startswith(str(venv))
    with free_socket() as sock:
        port = sock.getsockname()[1]
    (elsewhere / "relay.toml").write_text(render_config(
        port=port, store_url="sqlite:///data/relay.db",
        chains=[{"name": "main", "targets": [{"name": "ci", "url": "http://127.0.0.1:9/"}]}]))
    relay = venv / "bin" / "relay"
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    log = tmp_path / "relay.log"
    with open(log, "wb") as output:
        server = subprocess.Popen([str(relay), "serve", "--config", "relay.toml"],
                                  cwd=elsewhere, env=env, stdout=output, stderr=output)
    url = f"http://127.0.0.1:{port}"
    try:
        async with aiohttp.ClientSession() as http:
            async def healthy() -> bool:
                assert server.poll() is None, log.read_text()
                try:
                    async with http.get(f"{url}/healthz") as answer:
                        return answer.status == 200
                except aiohttp.ClientError:
                    return False

            await wait_until(healthy, timeout=20, what="the installed relay to serve")
            async with http.post(f"{url}/hooks/main/{CHAIN_TOKEN}", json=SEED_TAG_PUSH
                                 ) as answer:
                assert answer.status == 202  # validated against the wheel's schemas
            async with http.post(f"{url}/hooks/main/{CHAIN_TOKEN}", json={"push_data": {}}
                                 ) as answer:
                assert answer.status == 422
            async with http.get(f"{url}/ui/static/app.js") as answer:
                assert answer.status == 200
            async with http.get(f"{url}/history", headers={
                    "Authorization": f"Bearer {ADMIN_TOKEN}"}) as answer:
                assert len((await answer.json())["items"]) == 1
        probe = await asyncio.create_subprocess_exec(
            str(relay), "healthcheck", "--config", "relay.toml", cwd=elsewhere)
        assert await probe.wait() == 0
        assert (elsewhere / "data" / "relay.db").exists()
    finally:
        server.terminate()
        server.wait(30)
    assert server.returncode == 0, log.read_text()
