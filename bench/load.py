"""Sustained load against a served gateway: `insitu serve` in its own process on loopback.

N client threads (httpx, one connection each, each its own analyst, spread over four
departments so the gateway's per-caller and per-department caps do not throttle them) submit
jobs for a fixed time and wait for each one's released result with its receipt
(`POST /v1/jobs?wait=60`, the synchronous fast path; `--two-calls`: then
`GET /v1/jobs/{id}/result?wait=60`), on SQLite and on PostgreSQL (a fresh database on
127.0.0.1:5432, dropped afterwards). Two phases per store: small aggregate jobs (100k rows,
the `bench e2e` template) and verify jobs (`KEYS` keys each against 1M people). Reported per
phase: jobs/s, keys/s, end-to-end p50/p95/p99, errors by status, CPU milliseconds per job of
the gateway process and of its sandbox workers (from /proc: far steadier than wall time on a
shared machine), and the peak RSS of the gateway process and of its sandbox worker processes
(sampled from /proc every 0.2 s). Goals (issue 13): ≥ 200 jobs/s from 16 clients, ≥ 2,000
verified keys/s, gateway RSS ≤ 300 MB.

    python -m bench load [--quick] [--clients=N] [--seconds=S] [--workers=N] [--sqlite-only]
                       [--two-calls]   (submit, then GET the result: without `?wait` on submit)
                       [--pythonpath=DIR]   (serve the gateway of another checkout)
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from collections import Counter
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import sqlalchemy as sa
from rich.console import Console
from rich.table import Table

from bench import e2e, verify
from bench.common import write_result
from gateway import home
from gateway.auth.issuer import LocalIssuer
from gateway.auth.keys import IssuerKeys
from gateway.settings import Settings

PG_URL = os.environ.get("INSITU_TEST_PG_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/test")
KEYS = 100
GOAL_JOBS_S = 200
GOAL_KEYS_S = 2000
GOAL_RSS_MB = 300
YAML = {"Content-Type": "application/yaml"}


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


@contextmanager
def fresh_database(kind: str) -> Iterator[str | None]:
    """None (the home's SQLite file) or the URL of a new PostgreSQL database, dropped after."""
    if kind == "sqlite":
        yield None
        return
    name = f"insitu_load_{uuid.uuid4().hex[:10]}"
    admin = sa.create_engine(PG_URL, isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(sa.text(f'CREATE DATABASE "{name}"'))
    try:
        yield sa.make_url(PG_URL).set(database=name).render_as_string(False)
    finally:
        with admin.connect() as conn:
            conn.execute(sa.text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        admin.dispose()


def pg_available() -> bool:
    try:
        engine = sa.create_engine(PG_URL, connect_args={"connect_timeout": 3})
        with engine.connect() as conn:
            conn.execute(sa.text("SELECT 1"))
        engine.dispose()
    except Exception:
        return False
    return True


# --- memory of the served gateway and its sandbox workers (from /proc) ---


def _rss_mb(pid: int) -> float:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    except OSError:
        pass
    return 0.0


def _children(pid: int) -> list[int]:
    out = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(fields[1]) == pid:
            out.append(int(stat.parent.name))
    return out


TICKS = os.sysconf("SC_CLK_TCK")


def _cpu_s(pid: int, *, reaped: bool = False) -> float:
    """CPU seconds (user + system) of `pid`, or of its children it has waited for."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return 0.0
    first = 13 if reaped else 11  # utime, stime are fields 14, 15; cutime, cstime 16, 17
    return (int(fields[first]) + int(fields[first + 1])) / TICKS


def cpu_split(pid: int) -> tuple[float, float]:
    """(gateway CPU s, sandbox workers' CPU s: live ones plus those already reaped)."""
    sandbox = _cpu_s(pid, reaped=True) + sum(_cpu_s(c) for c in _children(pid))
    return _cpu_s(pid), sandbox


@dataclass
class MemoryWatch:
    """Peak RSS of the gateway and of all its sandbox workers together, and the most workers."""

    pid: int
    gateway_mb: float = 0.0
    sandbox_mb: float = 0.0
    sandbox_max_worker_mb: float = 0.0
    sandbox_workers: int = 0
    _stop: threading.Event = field(default_factory=threading.Event)

    def _loop(self) -> None:
        while not self._stop.wait(0.2):
            self.sample()

    def sample(self) -> None:
        self.gateway_mb = max(self.gateway_mb, _rss_mb(self.pid))
        workers = [_rss_mb(c) for c in _children(self.pid)]
        self.sandbox_workers = max(self.sandbox_workers, len(workers))
        self.sandbox_mb = max(self.sandbox_mb, sum(workers))
        self.sandbox_max_worker_mb = max([self.sandbox_max_worker_mb, *workers])

    @contextmanager
    def watching(self) -> Iterator[MemoryWatch]:
        thread = threading.Thread(target=self._loop, daemon=True)
        thread.start()
        try:
            yield self
        finally:
            self._stop.set()
            thread.join()

    def figures(self) -> dict[str, float]:
        return {
            "gateway_rss_mb": round(self.gateway_mb, 1),
            "sandbox_rss_mb": round(self.sandbox_mb, 1),
            "sandbox_worker_max_rss_mb": round(self.sandbox_max_worker_mb, 1),
            "sandbox_workers_max": self.sandbox_workers,
        }


# --- the served gateway ---


DEPARTMENTS = 4  # clients spread over departments: each has its own running and waiting caps


@dataclass
class Gateway:
    url: str
    pid: int
    owner: str
    analyst: str
    issuer: LocalIssuer

    def client_token(self, n: int) -> str:
        """Client n's own analyst, in one of `DEPARTMENTS` departments (the gateway caps
        waits per caller and running jobs per department)."""
        return self.issuer.issue(
            subject=f"analyst{n}@load",
            department=f"load{n % DEPARTMENTS}",
            roles=["analyst"],
            ttl_s=3600,
        )


@contextmanager
def serve(
    home_dir: Path, database_url: str | None, workers: int, pythonpath: str | None = None
) -> Iterator[Gateway]:
    """`pythonpath`: serve another checkout's gateway (to compare with it in one run)."""
    port = free_port()
    env = {**os.environ, "INSITU_HOME": str(home_dir), "INSITU_WORKERS": str(workers)}
    if pythonpath is not None:
        env["PYTHONPATH"] = pythonpath
    if database_url is not None:
        env["INSITU_DATABASE_URL"] = database_url
    command = [sys.executable, "-m", "gateway.cli", "serve", "--port", str(port)]
    proc = subprocess.Popen(command, env=env, stdout=subprocess.DEVNULL)
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                if httpx.get(f"{url}/healthz", timeout=1).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            if proc.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError("the gateway did not start")
            time.sleep(0.2)
        settings = Settings(home=home_dir, database_url=database_url)
        keys = IssuerKeys.load(settings.keys_dir / home.ISSUER_KEYS)
        issuer = LocalIssuer(keys, issuer=settings.local_issuer, audience=settings.oidc_audience)
        yield Gateway(
            url=url,
            pid=proc.pid,
            owner=issuer.issue(subject="owner@bench", department="bench", roles=["data_owner"]),
            analyst=issuer.issue(
                subject="analyst@stats", department="stats", roles=["analyst"], ttl_s=3600
            ),
            issuer=issuer,
        )
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def register(gw: Gateway, dataset: str, template: str) -> None:
    with httpx.Client(base_url=gw.url, timeout=60) as http:
        owner = {"Authorization": f"Bearer {gw.owner}"}
        analyst = {"Authorization": f"Bearer {gw.analyst}"}
        r = http.post("/v1/datasets", content=dataset.encode(), headers={**owner, **YAML})
        assert r.status_code in (201, 409), r.text
        t = http.post("/v1/templates", content=template.encode(), headers={**analyst, **YAML})
        assert t.status_code == 201, t.text
        body = t.json()
        a = http.post(
            f"/v1/templates/{body['id']}/versions/{body['version']}/approvals",
            json={"content_hash": body["content_hash"]},
            headers=owner,
        )
        assert a.status_code == 201, a.text


# --- the clients ---


@dataclass
class Tally:
    latencies: list[float] = field(default_factory=list)
    errors: Counter[str] = field(default_factory=Counter)
    lock: threading.Lock = field(default_factory=threading.Lock)


def one_job(http: httpx.Client, submission: dict[str, Any], *, fast: bool) -> str | None:
    """Submit, wait for the released result with its receipt; None, or what went wrong.

    `fast`: `POST /v1/jobs?wait=60` answers with the result (one request); else, or when it
    answers 202, `GET /v1/jobs/{id}/result?wait=60`."""
    r = http.post("/v1/jobs", json=submission, params={"wait": 60} if fast else None)
    if r.status_code == 200 and fast:
        res = r
    elif r.status_code != 202:
        return f"submit {r.status_code}"
    else:
        res = http.get(f"/v1/jobs/{r.json()['id']}/result", params={"wait": 60})
    if res.status_code != 200:
        return f"result {res.status_code}"
    body = res.json()
    if body.get("status") != "released":
        return f"job {body.get('status')}"
    if "receipt" not in body:
        return "no receipt"
    return None


def drive(
    gw: Gateway,
    clients: int,
    seconds: float,
    submission: Callable[[int], dict[str, Any]],
    *,
    fast: bool = True,
) -> tuple[Tally, float]:
    tally = Tally()
    stop_at = time.monotonic() + seconds
    start = time.monotonic()

    def client(n: int) -> None:
        headers = {"Authorization": f"Bearer {gw.client_token(n)}"}
        with httpx.Client(base_url=gw.url, headers=headers, timeout=90) as http:
            i = 0
            while time.monotonic() < stop_at:
                t0 = time.perf_counter()
                try:
                    error = one_job(http, submission(n * 1_000_000 + i), fast=fast)
                except httpx.HTTPError as exc:
                    error = type(exc).__name__
                elapsed = time.perf_counter() - t0
                with tally.lock:
                    if error is None:
                        tally.latencies.append(elapsed)
                    else:
                        tally.errors[error] += 1
                i += 1

    threads = [threading.Thread(target=client, args=(n,)) for n in range(clients)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return tally, time.monotonic() - start


def percentile(ordered: list[float], q: float) -> float:
    if not ordered:
        return float("nan")
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))] * 1000


def phase_figures(tally: Tally, wall_s: float, keys_per_job: int) -> dict[str, Any]:
    ordered = sorted(tally.latencies)
    jobs_s = len(ordered) / wall_s
    return {
        "jobs": len(ordered),
        "seconds": round(wall_s, 2),
        "jobs_per_s": round(jobs_s, 2),
        "keys_per_s": round(jobs_s * keys_per_job, 1),
        "p50_ms": round(percentile(ordered, 0.50), 1),
        "p95_ms": round(percentile(ordered, 0.95), 1),
        "p99_ms": round(percentile(ordered, 0.99), 1),
        "errors": dict(tally.errors),
    }


def run_store(
    kind: str,
    clients: int,
    seconds: float,
    workers: int,
    *,
    fast: bool,
    pythonpath: str | None = None,
) -> dict[str, Any]:
    with (
        tempfile.TemporaryDirectory(prefix="insitu-load-") as tmp,
        fresh_database(kind) as database_url,
    ):
        home_dir = Path(tmp) / "home"
        settings = Settings(home=home_dir, database_url=database_url)
        if pythonpath is None:
            home.init_home(settings)
        else:  # the other checkout's own migrations
            env = {**os.environ, "PYTHONPATH": pythonpath}
            if database_url is not None:
                env["INSITU_DATABASE_URL"] = database_url
            command = [sys.executable, "-m", "gateway.cli", "init", "--home", str(home_dir)]
            subprocess.run(command, env=env, check=True, stdout=subprocess.DEVNULL)
        e2e.write_events(settings.data_dir / "bench" / "events.parquet", 100_000)
        people = verify.write_people(settings.data_dir / "bench" / "people.parquet", 1_000_000)
        out: dict[str, Any] = {
            "store": kind,
            "clients": clients,
            "workers": workers,
            "submit_wait": fast,
        }
        with serve(home_dir, database_url, workers, pythonpath) as gw:
            register(gw, e2e.DATASET, e2e.TEMPLATE)
            register(gw, verify.DATASET, verify.TEMPLATE)
            watch = MemoryWatch(gw.pid)
            keys = (people * (KEYS // len(people) + 1))[:KEYS]
            phases: dict[str, tuple[Callable[[int], dict[str, Any]], int]] = {
                "aggregate": (
                    lambda i: {
                        "template": "events-by-district",
                        "parameters": {"year": 2015 + i % 11},
                    },
                    0,
                ),
                "verify": (
                    lambda i: {
                        "template": "bench-resident",
                        "parameters": {"district": f"d0{i % 8}", "person_id": keys},
                    },
                    KEYS,
                ),
            }
            with watch.watching():
                for name, (submission, per_job) in phases.items():
                    drive(gw, 2, 2.0, submission, fast=fast)  # warm up: workers, caches
                    before = cpu_split(gw.pid)
                    tally, wall = drive(gw, clients, seconds, submission, fast=fast)
                    after = cpu_split(gw.pid)
                    out[name] = phase_figures(tally, wall, per_job)
                    # CPU per job depends far less on other work on the machine than wall time
                    jobs = max(1, out[name]["jobs"])
                    out[name]["gateway_cpu_ms_per_job"] = round(
                        (after[0] - before[0]) * 1000 / jobs, 1
                    )
                    out[name]["sandbox_cpu_ms_per_job"] = round(
                        (after[1] - before[1]) * 1000 / jobs, 1
                    )
            out["memory"] = watch.figures()
    return out


def print_results(console: Console, results: list[dict[str, Any]]) -> None:
    table = Table(title="Sustained load against `insitu serve` (each job waited to its receipt)")
    columns = ("store", "phase", "jobs", "jobs/s", "keys/s", "p50 ms", "p95 ms", "p99 ms")
    for col in (*columns, "gateway CPU ms/job", "sandbox CPU ms/job"):
        table.add_column(col, justify="right", no_wrap=True)
    table.add_column("errors")
    for r in results:
        for phase in ("aggregate", "verify"):
            f = r[phase]
            table.add_row(
                r["store"],
                phase,
                str(f["jobs"]),
                f"{f['jobs_per_s']:.1f}",
                f"{f['keys_per_s']:.0f}" if phase == "verify" else "",
                f"{f['p50_ms']:.0f}",
                f"{f['p95_ms']:.0f}",
                f"{f['p99_ms']:.0f}",
                f"{f['gateway_cpu_ms_per_job']:.1f}",
                f"{f['sandbox_cpu_ms_per_job']:.1f}",
                ", ".join(f"{k}: {v}" for k, v in f["errors"].items()) or "none",
            )
    console.print(table)
    mem = Table(title=f"Peak memory (goal: gateway ≤ {GOAL_RSS_MB} MB)")
    for col in ("store", "gateway MB", "sandbox MB (all)", "largest worker MB", "workers"):
        mem.add_column(col, justify="right")
    for r in results:
        m = r["memory"]
        mem.add_row(
            r["store"],
            f"{m['gateway_rss_mb']:.0f}",
            f"{m['sandbox_rss_mb']:.0f}",
            f"{m['sandbox_worker_max_rss_mb']:.0f}",
            str(m["sandbox_workers_max"]),
        )
    console.print(mem)


def _flag(argv: list[str], name: str, default: float) -> float:
    """`--name=value` (the runner takes bare words for benchmark names)."""
    for arg in argv:
        if arg.startswith(f"{name}="):
            return float(arg.split("=", 1)[1])
    return default


def main(argv: list[str] | None = None) -> None:
    argv = sys.argv[1:] if argv is None else argv
    quick = "--quick" in argv
    clients = int(_flag(argv, "--clients", 16))
    seconds = _flag(argv, "--seconds", 5 if quick else 20)
    workers = int(_flag(argv, "--workers", 2))
    console = Console(width=160)
    stores = ["sqlite"]
    if "--sqlite-only" not in argv:
        if pg_available():
            stores.append("postgresql")
        else:
            console.print("PostgreSQL at 127.0.0.1:5432 is not reachable: SQLite only")
    fast = "--two-calls" not in argv
    other = next((a.split("=", 1)[1] for a in argv if a.startswith("--pythonpath=")), None)
    results = [
        run_store(kind, clients, seconds, workers, fast=fast, pythonpath=other) for kind in stores
    ]
    print_results(console, results)
    path = write_result(
        "load",
        {
            "goals": {
                "jobs_per_s": GOAL_JOBS_S,
                "keys_per_s": GOAL_KEYS_S,
                "gateway_rss_mb": GOAL_RSS_MB,
            },
            "keys_per_verify_job": KEYS,
            "runs": results,
            "served_from": other or "this checkout",
        },
    )
    console.print(f"written {path}")
