"""Anonymous reads of a published result (issue 18b): goal >= 2,000 requests/s on 2 cores.

The gateway runs as its own process (`insitu serve`: uvicorn, one worker) on a scratch home;
the market owner publishes a released aggregate; then a real HTTP client — `wrk` when
installed (apt-get install wrk), else a keep-alive asyncio client in another process — reads
`/open/v1/datasets/{id}` (JSON) and `.../data.csv` without signing in, for `DURATION_S`
seconds each. The anonymous limit is raised for the run (`INSITU_OPEN_ANONYMOUS_PER_MINUTE`)
so the benchmark measures serving, not refusing; every read is still rate-checked and counted.
Afterwards a refresh is published and the next read must show the new version (the cache is
invalidated on publish).
"""

from __future__ import annotations

import asyncio
import multiprocessing
import os
import re
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import httpx

from bench.common import write_result
from gateway import home
from gateway.auth.issuer import LocalIssuer
from gateway.auth.keys import IssuerKeys
from gateway.demo import documents
from gateway.demo.data import write_demo_data
from gateway.settings import Settings

DURATION_S = 10
CONNECTIONS = 32
GOAL = 2000.0
OPEN_ID = "licences-valid"


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


def _setup(url: str, settings: Settings) -> tuple[httpx.Client, dict[str, dict[str, str]]]:
    keys = IssuerKeys.load(settings.keys_dir / home.ISSUER_KEYS)
    issuer = LocalIssuer(keys, issuer=settings.local_issuer, audience=settings.oidc_audience)

    def bearer(sub: str, dept: str, role: str) -> dict[str, str]:
        token = issuer.issue(subject=sub, department=dept, roles=[role])
        return {"Authorization": f"Bearer {token}"}

    who = {"owner": bearer("owner@market", "market", "data_owner")}
    who["analyst"] = bearer("analyst@stats", "stats", "analyst")
    http = httpx.Client(base_url=url, timeout=120)
    yaml = {"Content-Type": "application/yaml"}
    http.post("/v1/datasets", content=documents.LICENCES, headers={**who["owner"], **yaml})
    proposed = http.post(
        "/v1/templates", content=documents.OPEN_TEMPLATE, headers={**who["analyst"], **yaml}
    ).json()
    http.post(
        "/v1/templates/licences-by-district/versions/1/approvals",
        json={"content_hash": proposed["content_hash"]},
        headers=who["owner"],
    ).raise_for_status()
    return http, who


def _released(http: httpx.Client, who: dict[str, dict[str, str]]) -> str:
    job = http.post(
        "/v1/jobs",
        json={"template": "licences-by-district", "parameters": {"status": "valid"}},
        headers=who["analyst"],
    ).json()
    result = http.get(
        f"/v1/jobs/{job['id']}/result", params={"wait": 60}, headers=who["analyst"]
    ).json()
    assert result["status"] == "released", result
    job_id: str = job["id"]
    return job_id


async def _client(host: str, port: int, path: str, seconds: float) -> int:
    """One keep-alive connection reading `path` until time is up; responses counted."""
    reader, writer = await asyncio.open_connection(host, port)
    request = f"GET {path} HTTP/1.1\r\nHost: {host}\r\n\r\n".encode()
    done = 0
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        writer.write(request)
        head = await reader.readuntil(b"\r\n\r\n")
        if not head.startswith(b"HTTP/1.1 200"):
            raise RuntimeError(head.split(b"\r\n")[0].decode())
        length = int(re.search(rb"(?i)content-length: *(\d+)", head).group(1))  # type: ignore[union-attr]
        await reader.readexactly(length)
        done += 1
    writer.close()
    return done


def _python_load(args: tuple[str, int, str, float, int]) -> int:
    host, port, path, seconds, connections = args

    async def run() -> int:
        counts = await asyncio.gather(
            *(_client(host, port, path, seconds) for _ in range(connections))
        )
        return sum(counts)

    return asyncio.run(run())


def _cpu_s(pid: int) -> float:
    """User + system CPU seconds the process has used (Linux /proc)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def _measure(port: int, path: str, pid: int) -> dict[str, Any]:
    before = _cpu_s(pid)
    result = _load(port, path)
    used = _cpu_s(pid) - before
    # Requests per CPU-second of the server: what one core serves when nothing else runs on it
    # (the shared machine's load average makes the wall-clock rate a lower bound).
    result["server_cpu_s"] = round(used, 2)
    result["req_per_server_cpu_s"] = round(result["requests"] / used) if used else None
    return result


def _load(port: int, path: str) -> dict[str, Any]:
    wrk = shutil.which("wrk")
    if wrk is not None:
        out = subprocess.run(
            [wrk, "-t2", f"-c{CONNECTIONS}", f"-d{DURATION_S}s", f"http://127.0.0.1:{port}{path}"],
            capture_output=True,
            text=True,
            check=True,
        ).stdout
        rate = float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1))  # type: ignore[union-attr]
        errors = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
        requests = int(re.search(r"(\d+) requests in", out).group(1))  # type: ignore[union-attr]
        return {
            "client": "wrk",
            "req_per_s": rate,
            "requests": requests,
            "non_2xx": int(errors.group(1)) if errors else 0,
        }
    with multiprocessing.get_context("spawn").Pool(1) as pool:
        done = pool.apply(_python_load, ((("127.0.0.1", port, path, DURATION_S, CONNECTIONS)),))
    return {
        "client": "python-asyncio",
        "req_per_s": done / DURATION_S,
        "requests": done,
        "non_2xx": 0,
    }


def main() -> None:
    with tempfile.TemporaryDirectory(prefix="insitu-bench-open-") as tmp:
        settings = Settings(home=Path(tmp) / "home", database_url=None)
        home.init_home(settings)
        write_demo_data(settings.data_dir, enterprises_n=20_000, residents_n=1_000)
        port = _free_port()
        env = {
            **os.environ,
            "INSITU_HOME": str(settings.home),
            "INSITU_OPEN_ANONYMOUS_PER_MINUTE": "10000000",
        }
        server = subprocess.Popen(
            [sys.executable, "-m", "gateway.cli", "serve", "--port", str(port)],
            env=env,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        try:
            url = f"http://127.0.0.1:{port}"
            deadline = time.monotonic() + 60
            while True:
                try:
                    if httpx.get(f"{url}/healthz").status_code == 200:
                        break
                except httpx.HTTPError:
                    pass
                if time.monotonic() > deadline:
                    raise RuntimeError("the gateway did not start")
                time.sleep(0.2)
            http, who = _setup(url, settings)
            http.post(
                f"/v1/open/{OPEN_ID}",
                json={"job": _released(http, who), "title": "Valid licences by district"},
                headers=who["owner"],
            ).raise_for_status()
            results = {
                "json": _measure(port, f"/open/v1/datasets/{OPEN_ID}", server.pid),
                "csv": _measure(port, f"/open/v1/datasets/{OPEN_ID}/data.csv", server.pid),
            }
            http.post(
                f"/v1/open/{OPEN_ID}/versions",
                json={"job": _released(http, who)},
                headers=who["owner"],
            ).raise_for_status()
            version = httpx.get(f"{url}/open/v1/datasets/{OPEN_ID}").json()["version"]
            assert version == 2, "the cache was not invalidated on publish"
        finally:
            server.terminate()
            server.wait(timeout=60)
    for name, r in results.items():
        verdict = "meets" if r["req_per_s"] >= GOAL else "misses"
        print(
            f"open {name}: {r['req_per_s']:,.0f} req/s ({r['client']}, {CONNECTIONS} "
            f"connections, {DURATION_S} s) — {verdict} the {GOAL:,.0f} req/s goal; "
            f"{r['req_per_server_cpu_s']:,} req per server CPU-second"
        )
    print(f"load average during the run: {os.getloadavg()[0]:.1f} on {os.cpu_count()} cores")
    path = write_result(
        "open",
        {
            "goal_req_per_s": GOAL,
            "cores": os.cpu_count(),
            "duration_s": DURATION_S,
            "connections": CONNECTIONS,
            "results": results,
            "invalidated_on_publish": True,
            "load_average": os.getloadavg()[0],
        },
    )
    print(f"written to {path}")
