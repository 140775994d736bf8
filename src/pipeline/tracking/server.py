"""The team tracking server: `mlflow server` with a PostgreSQL backend store and an artifact root (`make server`).

Without `--db`, it starts a PostgreSQL cluster of its own (Debian's `postgresql` package: initdb / pg_ctl under
`--data`), listening on loopback only with trust authentication, which suits one machine and tests; a team
points `--db` at a managed PostgreSQL with a password instead. PostgreSQL refuses to run as root, so as root
the cluster runs as the `postgres` system user the Debian package creates.
Clients set `tracking.uri=http://<host>:<port>`; artifacts are uploaded through the server (`--artifacts-destination`).
"""
from __future__ import annotations

import argparse
import glob
import os
import pwd
import shutil
import socket
import subprocess
import sys
import time
import urllib.request
from dataclasses import dataclass
from pathlib import Path

DB_USER = "mlflow"
DB_NAME = "mlflow"
START_TIMEOUT_S = 120.0


class ServerError(RuntimeError):
    """A server did not start; the message is one line."""


def postgres_bin(tool: str) -> str:
    """A PostgreSQL server tool: on PATH, else the newest Debian install under /usr/lib/postgresql/<major>/bin."""
    found = shutil.which(tool) or next(iter(sorted(glob.glob(f"/usr/lib/postgresql/*/bin/{tool}"), reverse=True)), None)
    if found is None:
        raise ServerError(f"{tool} not found: install PostgreSQL (Debian: apt-get install postgresql)")
    return found


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _as_owner(command: list[str], owner: str | None) -> list[str]:
    return ["runuser", "-u", owner, "--", *command] if owner else command


@dataclass
class Postgres:
    """A PostgreSQL cluster in `data` on loopback `port`, started by `start` and stopped by `stop`."""

    data: Path
    port: int

    @property
    def owner(self) -> str | None:
        return "postgres" if os.geteuid() == 0 else None

    @property
    def uri(self) -> str:
        return f"postgresql://{DB_USER}@127.0.0.1:{self.port}/{DB_NAME}"

    def _run(self, command: list[str]) -> None:
        done = subprocess.run(_as_owner(command, self.owner), capture_output=True, text=True, timeout=START_TIMEOUT_S)
        if done.returncode:
            detail = " ".join((done.stderr or done.stdout).split())[-400:]
            raise ServerError(f"{Path(command[0]).name} failed: {detail}")

    def start(self) -> str:
        """Creates the cluster and database on first use; returns the SQLAlchemy URI of the database."""
        self.data.mkdir(parents=True, exist_ok=True)
        if self.owner:
            owner = pwd.getpwnam(self.owner)
            os.chown(self.data, owner.pw_uid, owner.pw_gid)
        self.data.chmod(0o700)
        fresh = not (self.data / "PG_VERSION").exists()
        if fresh:
            self._run([postgres_bin("initdb"), "-D", str(self.data), "-U", DB_USER, "--auth=trust", "-E", "UTF8"])
        options = f"-p {self.port} -k {self.data} -c listen_addresses=127.0.0.1"
        self._run([postgres_bin("pg_ctl"), "-D", str(self.data), "-l", str(self.data / "server.log"), "-o", options,
                   "-w", "-t", str(int(START_TIMEOUT_S)), "start"])
        if fresh:
            self._run([postgres_bin("createdb"), "-h", "127.0.0.1", "-p", str(self.port), "-U", DB_USER, DB_NAME])
        return self.uri

    def stop(self) -> None:
        self._run([postgres_bin("pg_ctl"), "-D", str(self.data), "-m", "fast", "-w", "stop"])


def mlflow_server_command(db_uri: str, artifacts: Path, port: int, host: str = "127.0.0.1", workers: int = 2) -> list[str]:
    mlflow = Path(sys.executable).parent / "mlflow"
    return [str(mlflow), "server", "--host", host, "--port", str(port), "--workers", str(workers),
            "--backend-store-uri", db_uri, "--artifacts-destination", str(artifacts.resolve())]


def wait_healthy(url: str, process: subprocess.Popen, timeout: float = START_TIMEOUT_S) -> None:
    """Until `url`/health answers; a server that exits or stays silent is a ServerError."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            urllib.request.urlopen(f"{url}/health", timeout=2).close()
            return
        except OSError:
            if process.poll() is not None:
                raise ServerError(f"mlflow server exited with status {process.returncode}") from None
            if time.monotonic() > deadline:
                raise ServerError(f"mlflow server did not answer at {url} within {timeout:.0f} s") from None
            time.sleep(0.5)


def start_mlflow_server(db_uri: str, artifacts: Path, port: int, log_file: Path, workers: int = 2) -> subprocess.Popen:
    """`mlflow server` in the background on loopback, returned once healthy."""
    env = {**os.environ, "MLFLOW_SERVER_ENABLE_JOB_EXECUTION": "false", "MLFLOW_DISABLE_TELEMETRY": "true"}
    with open(log_file, "ab") as log:
        process = subprocess.Popen(mlflow_server_command(db_uri, artifacts, port, workers=workers), env=env,
                                   stdout=log, stderr=subprocess.STDOUT)
    try:
        wait_healthy(f"http://127.0.0.1:{port}", process)
    except ServerError:
        process.terminate()
        process.wait(timeout=30)
        raise
    return process


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m pipeline.tracking.server", description=__doc__.splitlines()[0])
    parser.add_argument("--db", help="PostgreSQL URI of the backend store; default: a local cluster under --data")
    parser.add_argument("--data", type=Path, default=Path("server/postgres"), help="the local cluster's directory")
    parser.add_argument("--db-port", type=int, default=5433, help="the local cluster's port")
    parser.add_argument("--artifacts", type=Path, default=Path("server/artifacts"))
    parser.add_argument("--host", default="127.0.0.1", help="0.0.0.0 serves the team's network")
    parser.add_argument("--port", type=int, default=5000)
    parser.add_argument("--workers", type=int, default=4)
    args = parser.parse_args(argv)
    cluster = None if args.db else Postgres(args.data.resolve(), args.db_port)
    try:
        db_uri = args.db or cluster.start()
        args.artifacts.mkdir(parents=True, exist_ok=True)
        print(f"mlflow server: backend {db_uri}, artifacts {args.artifacts.resolve()}; "
              f"clients: tracking.uri=http://{args.host}:{args.port}", flush=True)
        env = {**os.environ, "MLFLOW_SERVER_ENABLE_JOB_EXECUTION": "false"}
        subprocess.run(mlflow_server_command(db_uri, args.artifacts, args.port, args.host, args.workers), env=env)
    except ServerError as error:
        print(f"error: {error}", file=sys.stderr)
        sys.exit(2)
    except KeyboardInterrupt:
        pass
    finally:
        if cluster is not None and (cluster.data / "postmaster.pid").exists():
            cluster.stop()


if __name__ == "__main__":
    main()
