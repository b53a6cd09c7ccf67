"""A forward HTTP proxy on loopback, as an egress proxy would be: it takes requests in
absolute form (`POST http://host:port/path HTTP/1.1`), records them, and forwards them."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from urllib.parse import urlsplit


@dataclass
class Proxied:
    method: str
    url: str
    proxy_authorization: str | None


@dataclass
class ForwardProxy:
    url: str = ""
    requests: list[Proxied] = field(default_factory=list)


async def _handle(proxy: ForwardProxy, reader: asyncio.StreamReader,
                  writer: asyncio.StreamWriter) -> None:
    try:
        head = await reader.readuntil(b"\r\n\r\n")
        lines = head.decode("latin-1").split("\r\n")
        method, target, version = lines[0].split(" ", 2)
        headers = [line.split(":", 1) for line in lines[1:] if ":" in line]
        named = {name.strip().lower(): value.strip() for name, value in headers}
        body = await reader.readexactly(int(named.get("content-length", "0")))
        proxy.requests.append(Proxied(method, target, named.get("proxy-authorization")))
        parts = urlsplit(target)
        upstream_reader, upstream_writer = await asyncio.open_connection(parts.hostname,
                                                                         parts.port or 80)
        kept = [f"{name.strip()}: {value.strip()}" for name, value in headers
                if name.strip().lower() not in ("proxy-authorization", "connection",
                                                "proxy-connection")]
        path = parts.path + (f"?{parts.query}" if parts.query else "")
        upstream_writer.write(("\r\n".join([f"{method} {path} {version}", *kept,
                                            "Connection: close"]) + "\r\n\r\n").encode()
                              + body)
        await upstream_writer.drain()
        answer = await upstream_reader.read()
        upstream_writer.close()
        writer.write(answer)
        await writer.drain()
    except (OSError, asyncio.IncompleteReadError, ValueError):
        pass
    finally:
        writer.close()


@contextlib.asynccontextmanager
async def forward_proxy() -> AsyncIterator[ForwardProxy]:
    proxy = ForwardProxy()
    server = await asyncio.start_server(lambda r, w: _handle(proxy, r, w), "127.0.0.1", 0)
    proxy.url = f"http://127.0.0.1:{server.sockets[0].getsockname()[1]}"
    try:
        yield proxy
    finally:
        server.close()
        await server.wait_closed()
