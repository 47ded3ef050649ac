"""What identity costs per request: token verification by algorithm and key source, and what a
flood of unknown `kid` values costs the gateway and the identity provider.

`python -m bench tokens` (a few seconds). The JWKS is served on loopback by this process.
"""

from __future__ import annotations

import json
import secrets
import tempfile
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

from joserfc import jwt
from joserfc.jwk import ECKey, RSAKey

from bench.common import summary, timed, write_result
from gateway.auth import (
    IssuerKeys,
    LocalIssuer,
    LocalKeySource,
    RemoteJwks,
    StaticKeySource,
    TokenInvalid,
    TokenVerifier,
)

ISSUER = "https://idp.bench/realms/gov"
AUDIENCE = "insitu"


class Jwks:
    def __init__(self, document: dict[str, Any]) -> None:
        body = json.dumps(document).encode()
        self.hits = 0
        outer = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                outer.hits += 1
                self.send_response(200)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *args: object) -> None:
                pass

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}/certs"
        threading.Thread(target=self.httpd.serve_forever, daemon=True).start()

    def stop(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()


def claims() -> dict[str, Any]:
    now = int(time.time())
    return {
        "iss": ISSUER,
        "aud": AUDIENCE,
        "sub": "zhang.wei",
        "iat": now,
        "exp": now + 3600,
        "department": "market",
        "roles": ["analyst"],
    }


def main(repeat: int = 1000) -> None:
    rows: list[dict[str, Any]] = []
    with tempfile.TemporaryDirectory() as scratch:
        path = Path(scratch) / "issuer.jwks.json"
        keys = IssuerKeys.generate(path)
        local_token = LocalIssuer(keys, issuer=ISSUER, audience=AUDIENCE).issue(
            subject="zhang.wei", department="market", roles=["analyst"]
        )
        static = TokenVerifier(
            StaticKeySource(keys.public_jwks()), issuer=ISSUER, audience=AUDIENCE
        )
        reloading = TokenVerifier(LocalKeySource(path), issuer=ISSUER, audience=AUDIENCE)

        def row(case: str, samples: list[float]) -> None:
            rows.append({"case": case, **summary(samples)})

        row("Ed25519, fixed key set", timed(lambda: static.verify(local_token), repeat=repeat))
        row(
            "Ed25519, key file (stat per call)",
            timed(lambda: reloading.verify(local_token), repeat=repeat),
        )

        ec = ECKey.generate_key("P-256", parameters={"kid": "ec"})
        rsa = RSAKey.generate_key(2048, parameters={"kid": "rsa"})
        server = Jwks({"keys": [ec.as_dict(private=False), rsa.as_dict(private=False)]})
        try:
            with RemoteJwks(server.url) as remote:
                verifier = TokenVerifier(
                    remote, issuer=ISSUER, audience=AUDIENCE, algorithms=["ES256", "RS256"]
                )
                for alg, key in (("ES256", ec), ("RS256", rsa)):
                    header = {"alg": alg, "kid": key.kid, "typ": "at+jwt"}
                    token = jwt.encode(header, claims(), key, algorithms=[alg])
                    row(
                        f"{alg}, remote JWKS (cached)",
                        timed(lambda t=token: verifier.verify(t), repeat=repeat),
                    )
                attacker = ECKey.generate_key("P-256")
                flood = [
                    jwt.encode(
                        {"alg": "ES256", "kid": secrets.token_hex(8), "typ": "at+jwt"},
                        claims(),
                        attacker,
                        algorithms=["ES256"],
                    )
                    for _ in range(repeat)
                ]
                before = server.hits
                tokens = iter(flood)

                def refuse() -> None:
                    try:
                        verifier.verify(next(tokens))
                    except TokenInvalid:
                        return
                    raise AssertionError("a forged token verified")

                samples = timed(refuse, repeat=repeat - 2, warmup=2)
                row(f"unknown kid x{repeat} (refused)", samples)
                flood_fetches = server.hits - before
        finally:
            server.stop()

    print(f"{'case':40} {'median ms':>10} {'p90 ms':>8} {'n':>6}")
    for row in rows:
        print(f"{row['case']:40} {row['median_ms']:>10.3f} {row['p90_ms']:>8.3f} {row['n']:>6}")
    print(f"JWKS fetches caused by the unknown-kid flood: {flood_fetches}")
    path = write_result("tokens", {"rows": rows, "flood_jwks_fetches": flood_fetches})
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
