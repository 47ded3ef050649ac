"""Start and stop a Spark Connect server on loopback from the pyspark wheel's own jars.

``python -m deploy.spark_connect start|stop|run [--port 15002]`` (``make spark`` /
``make spark-stop``) and ``SparkConnectServer`` (the test suite's fixture). Nothing is
downloaded: Spark Connect ships in the pyspark 4 wheel (``jars/spark-connect_*.jar``) and
the server runs on this machine's Java 17 (``java`` on PATH or ``JAVA_HOME``). Debian's
PostgreSQL JDBC driver (``libpostgresql-jdbc-java``) is put on the class path when it is
installed, so ``jdbc`` sources can reach PostgreSQL.

The server is local[2] with a small driver heap: sized for a 2-core machine that also runs
the gateway and the tests. It binds 127.0.0.1 only, keeps no Hive metastore (an in-memory
catalogue) and writes its logs and warehouse under one work directory.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

JDBC_JARS = (Path("/usr/share/java/postgresql.jar"),)
SERVER_CLASS = "org.apache.spark.sql.connect.service.SparkConnectServer"
DEFAULT_PORT = 15002
STATE_DIR = Path(os.environ.get("INSITU_SPARK_DIR", "/tmp/insitu-spark"))  # noqa: S108


class Unavailable(RuntimeError):
    """Java or pyspark is missing: the reason, for a skip (or a CI failure)."""


def spark_home() -> Path:
    try:
        import pyspark  # noqa: PLC0415 - optional: the `spark` extra
    except ImportError:
        raise Unavailable("pyspark is not installed (pip install '.[spark]')") from None
    home = Path(pyspark.__file__).parent
    if not any((home / "jars").glob("spark-connect_*.jar")):
        raise Unavailable("this pyspark has no Spark Connect jar (pyspark 4 ships one)")
    return home


def java() -> str:
    home = os.environ.get("JAVA_HOME")
    found = str(Path(home) / "bin" / "java") if home else shutil.which("java")
    if not found or not Path(found).exists():
        raise Unavailable("no Java found (apt-get install openjdk-17-jre-headless)")
    return found


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def command(port: int, work: Path, *, memory: str = "1g", cores: int = 2) -> list[str]:
    home = spark_home()
    jars = [str(j) for j in JDBC_JARS if j.exists()]
    confs = {
        "spark.master": f"local[{cores}]",
        "spark.driver.memory": memory,
        "spark.driver.host": "127.0.0.1",
        "spark.driver.bindAddress": "127.0.0.1",
        # loopback unless a container publishes it to its network (deploy/Dockerfile)
        "spark.connect.grpc.binding.address": os.environ.get("INSITU_SPARK_BIND", "127.0.0.1"),
        "spark.connect.grpc.binding.port": str(port),
        "spark.ui.enabled": "false",
        "spark.sql.catalogImplementation": "in-memory",
        "spark.sql.warehouse.dir": str(work / "warehouse"),
        "spark.local.dir": str(work / "local"),
        "spark.sql.shuffle.partitions": str(max(2, 2 * cores)),
        "spark.sql.ansi.enabled": "true",
    }
    args = [str(home / "bin" / "spark-submit"), "--class", SERVER_CLASS, "--name", "insitu"]
    for key, value in confs.items():
        args += ["--conf", f"{key}={value}"]
    if jars:
        args += ["--jars", ",".join(jars)]
    return [*args, "spark-internal"]


def environment(work: Path) -> dict[str, str]:
    home = spark_home()
    env = {k: v for k, v in os.environ.items() if not k.startswith(("INSITU_", "PYSPARK"))}
    env.update(
        SPARK_HOME=str(home),
        SPARK_LOG_DIR=str(work / "logs"),
        SPARK_PID_DIR=str(work),
        SPARK_NO_DAEMONIZE="1",
        SPARK_LOCAL_IP="127.0.0.1",
        JAVA_HOME=str(Path(java()).resolve().parent.parent),
    )
    return env


def wait_for(port: int, process: subprocess.Popen[bytes] | None, timeout_s: float) -> None:
    """Until the gRPC port accepts connections (the server logs it started just before)."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if process is not None and process.poll() is not None:
            raise RuntimeError(f"the Spark Connect server exited with {process.returncode}")
        with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), 1):
            return
        time.sleep(0.5)
    raise TimeoutError(f"no Spark Connect server on 127.0.0.1:{port} after {timeout_s:g} s")


class SparkConnectServer:
    """One server process we started (and only we stop), in a session of its own."""

    def __init__(self, port: int | None = None, work: Path | None = None) -> None:
        self.port = port or free_port()
        self.work = work or STATE_DIR / str(self.port)
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def remote(self) -> str:
        return f"sc://127.0.0.1:{self.port}"

    def start(self, timeout_s: float = 180.0) -> SparkConnectServer:
        for sub in ("logs", "local", "warehouse"):
            (self.work / sub).mkdir(parents=True, exist_ok=True)
        log = (self.work / "logs" / "server.log").open("ab")
        self.process = subprocess.Popen(  # noqa: S603 - our own fixed command
            command(self.port, self.work),
            cwd=self.work,
            env=environment(self.work),
            stdout=log,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            start_new_session=True,
        )
        log.close()
        (self.work / "server.pid").write_text(str(self.process.pid))
        try:
            wait_for(self.port, self.process, timeout_s)
        except BaseException:
            self.stop()
            raise
        return self

    def stop(self) -> None:
        if self.process is not None:
            process = self.process
            stop_group(process.pid, gone=lambda: process.poll() is not None)
            with contextlib.suppress(subprocess.TimeoutExpired):
                process.wait(timeout=30)
            self.process = None
        (self.work / "server.pid").unlink(missing_ok=True)


def stop_group(pid: int, gone: Callable[[], bool] | None = None) -> None:
    """SIGTERM the server's process group (spark-submit and its JVM), then SIGKILL after
    30 s. ``gone`` tells when our own child has exited (a zombie still takes signals)."""
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pid, signal.SIGTERM)
        for _ in range(60):
            time.sleep(0.5)
            if gone is not None and gone():
                return
            os.killpg(pid, 0)
        os.killpg(pid, signal.SIGKILL)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m deploy.spark_connect")
    parser.add_argument("action", choices=("start", "stop", "run"))
    parser.add_argument("--port", type=int, default=DEFAULT_PORT)
    args = parser.parse_args(argv)
    work = STATE_DIR / str(args.port)
    pid_file = work / "server.pid"
    if args.action == "stop":
        if not pid_file.exists():
            print(f"no Spark Connect server started on port {args.port}")
            return 0
        stop_group(int(pid_file.read_text()))
        pid_file.unlink(missing_ok=True)
        print(f"stopped the Spark Connect server on port {args.port}")
        return 0
    try:
        server = SparkConnectServer(args.port, work).start()
    except Unavailable as exc:
        print(f"cannot start Spark Connect: {exc}", file=sys.stderr)
        return 2
    print(f"Spark Connect server on {server.remote} (logs: {work / 'logs'})")
    if args.action == "start":
        return 0
    try:
        assert server.process is not None
        server.process.wait()
    except KeyboardInterrupt:
        server.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
