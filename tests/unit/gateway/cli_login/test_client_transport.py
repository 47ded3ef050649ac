"""The CLI never sends a bearer token in clear text to another host."""

from __future__ import annotations

import pytest

from gateway.cli.client import Client
from gateway.cli.output import CliError


@pytest.mark.parametrize(
    "url", ["http://gateway.example.gov", "http://10.0.0.5:8000", "http://0.0.0.0:8000"]
)
def test_token_refused_over_plain_http_to_another_host(
    url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    with pytest.raises(CliError, match="must use https") as info:
        Client(url=url, token="eyJ.secret.token")
    assert "eyJ" not in str(info.value)
    monkeypatch.setenv("INSITU_TOKEN", "eyJ.secret.token")
    with pytest.raises(CliError, match="must use https"):
        Client(url=url)


@pytest.mark.parametrize(
    "url", ["https://gateway.example.gov", "http://127.0.0.1:8000", "http://localhost:8000"]
)
def test_token_allowed_over_https_or_loopback(url: str) -> None:
    assert Client(url=url, token="t").token == "t"


def test_no_token_needs_no_https(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("INSITU_TOKEN", raising=False)
    assert Client(url="http://gateway.example.gov", token="").token == ""
