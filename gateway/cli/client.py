"""HTTP client for the gateway: `INSITU_URL` + a token; problems become one-line errors.

The token: an explicit one, else ``INSITU_TOKEN`` (always wins), else the one `insitu login`
cached for this URL (refreshed shortly before it expires), else none. A token is sent only
over https, or plain http to loopback.
"""

from __future__ import annotations

import os
from typing import TYPE_CHECKING, Any

from gateway.cli.output import CliError

if TYPE_CHECKING:
    import httpx

DEFAULT_URL = "http://127.0.0.1:8000"


def gateway_url(url: str | None = None) -> str:
    """The gateway URL in the one form the token cache is keyed by."""
    return (url or os.environ.get("INSITU_URL") or DEFAULT_URL).strip().rstrip("/")


class Client:
    def __init__(self, url: str | None = None, token: str | None = None) -> None:
        self.url = gateway_url(url)
        if token is None:
            token = os.environ.get("INSITU_TOKEN") or None
        if token is None:
            from gateway.cli.credentials import cached_token

            token = cached_token(self.url)
        if token:
            from gateway.auth.discovery import check_url

            try:
                check_url(self.url, "gateway URL")
            except ValueError:
                # A bearer token in clear text is a token anyone on the path can replay.
                raise CliError(
                    f"refusing to send a token to {self.url}: the gateway URL must use https "
                    "(plain http only on loopback)",
                    2,
                ) from None
        self.token = token
        import httpx  # lazy: `insitu --help` does not need it

        self._http = httpx.Client(base_url=self.url, timeout=httpx.Timeout(330.0, connect=5.0))

    def __del__(self) -> None:  # one client per command: close its connections with it
        http = getattr(self, "_http", None)
        if http is not None:
            http.close()

    def request(self, method: str, path: str, **kwargs: Any) -> Any:
        import httpx

        headers = dict(kwargs.pop("headers", {}) or {})
        if self.token:
            headers["Authorization"] = f"Bearer {self.token}"
        try:
            response = self._http.request(method, path, headers=headers, **kwargs)
        except httpx.HTTPError as exc:
            raise CliError(
                f"cannot reach the gateway at {self.url} ({type(exc).__name__})", 1
            ) from None
        if response.status_code >= 400:
            raise problem_error(response)
        return response.json()

    def download(self, path: str) -> bytes:
        """The raw body of a GET (for files such as the audit bundle)."""
        import httpx

        headers = {"Authorization": f"Bearer {self.token}"} if self.token else {}
        try:
            response = self._http.get(path, headers=headers)
        except httpx.HTTPError as exc:
            raise CliError(
                f"cannot reach the gateway at {self.url} ({type(exc).__name__})", 1
            ) from None
        if response.status_code >= 400:
            raise problem_error(response)
        return response.content

    def get(self, path: str, **kwargs: Any) -> Any:
        return self.request("GET", path, **kwargs)

    def post(self, path: str, **kwargs: Any) -> Any:
        return self.request("POST", path, **kwargs)

    def delete(self, path: str, **kwargs: Any) -> Any:
        return self.request("DELETE", path, **kwargs)


def problem_error(response: httpx.Response) -> CliError:
    try:
        body = response.json()
    except ValueError:
        body = {}
    detail = body.get("detail") or response.reason_phrase
    errors = body.get("errors")
    if errors:
        detail += ": " + "; ".join(f"{e.get('field')}: {e.get('message')}" for e in errors[:5])
    if body.get("rule"):
        detail += f" (rule: {body['rule']})"
    usage = response.status_code in {400, 404, 405, 410, 413, 422}
    return CliError(f"{response.status_code} {detail}", 2 if usage else 1)
