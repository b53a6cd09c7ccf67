"""A real CNCF distribution registry (Debian's docker-registry) that notifies relay, and real
images pushed to it with skopeo from OCI layouts built with umoci: no network needed.

The tests that use them skip where the programs are missing, and fail instead when
RELAY_REQUIRE_PEERS=1 (CI sets it): `apt-get install docker-registry skopeo umoci`.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import json
import os
import shutil
import subprocess
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from support import free_socket, wait_until

PROGRAMS = ("docker-registry", "skopeo", "umoci")


def require_programs() -> None:
    missing = [program for program in PROGRAMS if shutil.which(program) is None]
    if not missing:
        return
    reason = f"needs {', '.join(missing)} (apt-get install docker-registry skopeo umoci)"
    if os.environ.get("RELAY_REQUIRE_PEERS") == "1":
        pytest.fail(reason)
    pytest.skip(reason)


async def run(*command: str, cwd: Path | None = None) -> str:
    """Run a program without blocking the event loop that relay answers on."""
    process = await asyncio.create_subprocess_exec(
        *command, cwd=cwd, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT)
    output, _ = await asyncio.wait_for(process.communicate(), timeout=60)
    text = output.decode(errors="replace")
    if process.returncode != 0:
        raise AssertionError(f"{' '.join(command)} exited with {process.returncode}:\n{text}")
    return text


def _port() -> int:
    with free_socket() as sock:
        return int(sock.getsockname()[1])


class Registry:
    """`docker-registry serve` with one notification endpoint."""

    def __init__(self, root: Path, notify_url: str, token: str, timeout: str = "2s") -> None:
        self.root = root
        self.port = _port()
        self.debug_port = _port()
        self.host = f"127.0.0.1:{self.port}"
        self.config = root / "registry.yml"
        self.log = root / "registry.log"
        # JSON is YAML: the registry reads this as its config.yml.
        self.config.write_text(json.dumps({
            "version": 0.1,
            "log": {"level": "info", "formatter": "text"},
            "storage": {"filesystem": {"rootdirectory": str(root / "storage")},
                        "delete": {"enabled": True}},
            "http": {"addr": self.host, "debug": {"addr": f"127.0.0.1:{self.debug_port}"}},
            "notifications": {"endpoints": [{
                "name": "relay", "url": notify_url,
                "headers": {"Authorization": [f"Bearer {token}"]},
                "timeout": timeout, "threshold": 3, "backoff": "1s"}]},
        }, indent=2))
        self.process: subprocess.Popen[bytes] | None = None

    async def start(self) -> Registry:
        log = open(self.log, "ab")  # noqa: SIM115 - the child owns it
        self.process = subprocess.Popen(["docker-registry", "serve", str(self.config)],
                                        stdout=log, stderr=log)
        log.close()

        async def serving() -> bool:
            assert self.process is not None
            if self.process.poll() is not None:
                raise AssertionError(f"docker-registry exited:\n{self.log.read_text()}")
            try:
                async with aiohttp.ClientSession() as session, session.get(
                        f"http://{self.host}/v2/") as response:
                    return response.status == 200
            except aiohttp.ClientError:
                return False

        await wait_until(serving, timeout=20, what="docker-registry to serve /v2/")
        return self

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()

    async def endpoint_metrics(self) -> dict[str, Any]:
        async with aiohttp.ClientSession() as session, session.get(
                f"http://127.0.0.1:{self.debug_port}/debug/vars") as response:
            variables = await response.json(content_type=None)
        (endpoint,) = variables["registry"]["notifications"]["endpoints"]
        return dict(endpoint["Metrics"])

    async def notified(self, timeout: float = 30.0) -> dict[str, Any]:
        """Until every event the registry queued has been answered 2xx by its endpoint."""
        async def drained() -> dict[str, Any] | None:
            metrics = await self.endpoint_metrics()
            done = metrics["Pending"] == 0 and metrics["Successes"] == metrics["Events"]
            return metrics if done and metrics["Events"] else None

        return await wait_until(drained, timeout=timeout,
                                what="the registry to have notified every event")

    async def push(self, layout: Path, ref: str, repository: str, *, all_platforms: bool = False
                   ) -> None:
        await run("skopeo", "--insecure-policy", "copy", *(["--all"] if all_platforms else []),
                  "--dest-tls-verify=false", f"oci:{layout}:{ref}",
                  f"docker://{self.host}/{repository}")

    async def pull(self, repository: str) -> None:
        await run("skopeo", "inspect", "--tls-verify=false", f"docker://{self.host}/{repository}")

    async def delete(self, repository: str) -> None:
        await run("skopeo", "delete", "--tls-verify=false", f"docker://{self.host}/{repository}")


@contextlib.asynccontextmanager
async def registry(root: Path, notify_url: str, token: str, **options: Any
                   ) -> AsyncIterator[Registry]:
    started = Registry(root, notify_url, token, **options)
    try:
        yield await started.start()
    finally:
        started.stop()


class Layout:
    """An OCI image layout of tiny images, each one file in one layer."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.rootless = ["--rootless"] if os.geteuid() != 0 else []

    async def create(self) -> Layout:
        await run("umoci", "init", "--layout", str(self.path))
        return self

    async def image(self, ref: str, content: str, architecture: str = "amd64") -> str:
        """A new image `ref` holding /content.txt; its manifest's digest."""
        image = f"{self.path}:{ref}"
        await run("umoci", "new", "--image", image)
        await run("umoci", "config", *self.rootless, "--image", image, "--architecture",
                  architecture, "--os", "linux")
        source = self.path.parent / f"{ref}.txt"
        source.write_text(content)
        await run("umoci", "insert", *self.rootless, "--image", image, str(source),
                  "/content.txt")
        return str(self.descriptor(ref)["digest"])

    def descriptor(self, ref: str) -> dict[str, Any]:
        index = json.loads((self.path / "index.json").read_text())
        for entry in index["manifests"]:
            if entry.get("annotations", {}).get("org.opencontainers.image.ref.name") == ref:
                return dict(entry)
        raise KeyError(ref)

    def index(self, ref: str, platforms: dict[str, str]) -> str:
        """An image index `ref` over the images named in `platforms` (architecture: ref), as
        a multi-platform build makes; its digest."""
        manifests = [{**{k: v for k, v in self.descriptor(image).items()
                         if k != "annotations"},
                      "platform": {"architecture": architecture, "os": "linux"}}
                     for architecture, image in platforms.items()]
        blob = json.dumps({"schemaVersion": 2,
                           "mediaType": "application/vnd.oci.image.index.v1+json",
                           "manifests": manifests}).encode()
        digest = hashlib.sha256(blob).hexdigest()
        (self.path / "blobs" / "sha256" / digest).write_bytes(blob)
        index_path = self.path / "index.json"
        index = json.loads(index_path.read_text())
        index["manifests"].append({
            "mediaType": "application/vnd.oci.image.index.v1+json",
            "digest": f"sha256:{digest}", "size": len(blob),
            "annotations": {"org.opencontainers.image.ref.name": ref}})
        index_path.write_text(json.dumps(index))
        return f"sha256:{digest}"
