"""A PostgreSQL server of a test's own, to stop and start under load without disturbing the
shared server on 127.0.0.1:5432 that other tests use.

It needs PostgreSQL's server programs (`initdb`, `pg_ctl`; Debian's postgresql package puts
them in /usr/lib/postgresql/<version>/bin). Without them the test is skipped, saying so;
RELAY_REQUIRE_POSTGRES=1 (CI sets it) makes that a failure. PostgreSQL refuses to run as root:
run as root, the cluster belongs to the `postgres` user and the programs run as that user.
"""

from __future__ import annotations

import asyncio
import contextlib
import glob
import os
import pwd
import shutil
import tempfile
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from support import free_socket

PROGRAMS = ("initdb", "pg_ctl")


def _bin_dir() -> Path | None:
    for folder in [os.environ.get("RELAY_TEST_PG_BIN", ""),
                   *sorted(glob.glob("/usr/lib/postgresql/*/bin"), reverse=True)]:
        if folder and all((Path(folder) / program).is_file() for program in PROGRAMS):
            return Path(folder)
    found = [shutil.which(program) for program in PROGRAMS]
    if all(found):
        return Path(str(found[0])).parent
    return None


def _requirement_missing() -> str | None:
    if _bin_dir() is None:
        return ("needs PostgreSQL's initdb and pg_ctl (apt-get install postgresql, or set "
                "RELAY_TEST_PG_BIN to their folder)")
    if os.geteuid() == 0:
        try:
            pwd.getpwnam("postgres")
        except KeyError:
            return "runs as root, and there is no postgres user to run PostgreSQL as"
    return None


class PrivatePostgres:
    """One cluster in a temporary folder, listening on a free port of 127.0.0.1."""

    def __init__(self, bin_dir: Path, folder: Path, owner: str | None) -> None:
        self.bin_dir = bin_dir
        self.folder = folder
        self.data = folder / "data"
        self.owner = owner
        with free_socket() as sock:
            self.port = int(sock.getsockname()[1])
        self.url = f"postgresql://postgres@127.0.0.1:{self.port}/postgres"

    async def _run(self, program: str, *args: str) -> None:
        command = [str(self.bin_dir / program), *args]
        if self.owner is not None:
            command = ["runuser", "-u", self.owner, "--", *command]
        process = await asyncio.create_subprocess_exec(
            *command, cwd=self.folder, stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.STDOUT)
        output, _ = await asyncio.wait_for(process.communicate(), timeout=120)
        if process.returncode != 0:
            log = self.folder / "server.log"
            raise AssertionError(
                f"{program} {' '.join(args)} exited with {process.returncode}:\n"
                f"{output.decode(errors='replace')}\n"
                + (log.read_text(errors="replace") if log.exists() else ""))

    async def init(self) -> None:
        await self._run("initdb", "-D", str(self.data), "-A", "trust", "-U", "postgres",
                        "--no-sync")

    async def start(self) -> None:
        # fsync off: a fast stop still writes everything out (a shutdown checkpoint), and the
        # test never crashes the server itself.
        options = (f"-p {self.port} -c listen_addresses=127.0.0.1 -k {self.folder} "
                   "-c fsync=off -c max_connections=200")
        await self._run("pg_ctl", "-D", str(self.data), "-l", str(self.folder / "server.log"),
                        "-o", options, "-w", "-t", "60", "start")

    async def stop(self) -> None:
        """`pg_ctl stop -m fast`: every session is told FATAL 57P01 and closed, as on a
        restart of the server by its operator."""
        await self._run("pg_ctl", "-D", str(self.data), "-m", "fast", "-w", "-t", "60", "stop")


@contextlib.asynccontextmanager
async def private_postgres() -> AsyncIterator[PrivatePostgres]:
    """A started cluster, stopped and deleted afterwards (skips when it cannot be had)."""
    missing = _requirement_missing()
    if missing is not None:
        if os.environ.get("RELAY_REQUIRE_POSTGRES") == "1":
            pytest.fail(f"RELAY_REQUIRE_POSTGRES=1 but the private PostgreSQL {missing}")
        pytest.skip(f"a private PostgreSQL {missing}")
    bin_dir = _bin_dir()
    assert bin_dir is not None
    # Not under pytest's tmp_path: its folders are private to root, and PostgreSQL must be
    # able to reach its data folder as the postgres user.
    folder = Path(tempfile.mkdtemp(prefix="relay-pg-"))
    owner = None
    if os.geteuid() == 0:
        owner = "postgres"
        user = pwd.getpwnam(owner)
        os.chown(folder, user.pw_uid, user.pw_gid)
    server = PrivatePostgres(bin_dir, folder, owner)
    try:
        await server.init()
        await server.start()
        yield server
    finally:
        with contextlib.suppress(AssertionError):
            await server._run("pg_ctl", "-D", str(server.data), "-m", "immediate", "-w",
                              "stop")
        shutil.rmtree(folder, ignore_errors=True)
