"""A real PostgreSQL server for a test session: initdb into a temporary folder, started on a free port with
trust authentication on loopback, stopped at the end. Skips (with the reason) where no server is installed;
`.ci/run` installs one."""

from __future__ import annotations

import glob
import os
import pwd
import shutil
import socket
import subprocess
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path


def postgres_bin() -> Path | None:
    """The folder of initdb / pg_ctl: PATH first, then Debian's /usr/lib/postgresql/<version>/bin."""
    found = shutil.which("initdb")
    if found:
        return Path(found).parent
    versions = sorted(glob.glob("/usr/lib/postgresql/*/bin/initdb"))
    return Path(versions[-1]).parent if versions else None


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def _as_user() -> list[str]:
    """PostgreSQL refuses to run as root: run it as the `postgres` user then."""
    if os.geteuid() != 0:
        return []
    try:
        pwd.getpwnam("postgres")
    except KeyError as error:
        raise RuntimeError("running as root and no `postgres` user to run the server as") from error
    return ["runuser", "-u", "postgres", "--"]


@contextmanager
def postgres_server(folder: Path) -> Iterator[str]:
    """Start a server with its data in `folder`; yields its URL."""
    binaries = postgres_bin()
    if binaries is None:
        raise FileNotFoundError(
            "PostgreSQL is not installed (no initdb on PATH or under /usr/lib/postgresql)"
        )
    folder.mkdir(parents=True, exist_ok=True)
    user = _as_user()
    if user:
        shutil.chown(folder, "postgres", "postgres")
    data, port = folder / "data", _free_port()
    run = dict(check=True, capture_output=True, text=True)
    subprocess.run([*user, str(binaries / "initdb"), "-D", str(data), "-A", "trust", "-U", "postgres"], **run)
    options = f"-p {port} -k {folder} -c listen_addresses=127.0.0.1 -c fsync=off"
    subprocess.run(
        [
            *user,
            str(binaries / "pg_ctl"),
            "-D",
            str(data),
            "-o",
            options,
            "-l",
            str(folder / "log"),
            "-w",
            "start",
        ],
        **run,
    )
    try:
        url = f"postgresql://postgres@127.0.0.1:{port}/postgres"
        deadline = time.monotonic() + 30
        import psycopg

        while True:
            try:
                psycopg.connect(url).close()
                break
            except psycopg.OperationalError:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.2)
        yield url
    finally:
        subprocess.run(
            [*user, str(binaries / "pg_ctl"), "-D", str(data), "-m", "immediate", "stop"],
            check=False,
            capture_output=True,
        )
