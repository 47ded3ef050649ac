"""Pin the public exports of gateway.auth and what it may import."""

from __future__ import annotations

import ast
from pathlib import Path

import gateway.auth

AUTH_DIR = Path(gateway.auth.__file__).parent
ALLOWED_THIRD_PARTY = {"joserfc", "httpx", "cryptography"}


def test_public_exports_are_pinned() -> None:
    assert sorted(gateway.auth.__all__) == [
        "AuthError",
        "InvalidIdentity",
        "IssuerKeyError",
        "IssuerKeys",
        "KeySource",
        "KeySourceUnavailable",
        "LocalIssuer",
        "LocalKeySource",
        "Principal",
        "RemoteJwks",
        "StaticKeySource",
        "TokenInvalid",
        "TokenMissing",
        "TokenVerifier",
        "canonical_department",
        "canonical_role",
        "canonical_roles",
        "canonical_subject",
        "import_public_jwks",
        "parse_bearer",
    ]
    for name in gateway.auth.__all__:
        assert getattr(gateway.auth, name) is not None


def test_error_tree() -> None:
    from gateway.auth import errors

    for name in (
        "TokenMissing",
        "TokenInvalid",
        "KeySourceUnavailable",
        "InvalidIdentity",
        "IssuerKeyError",
    ):
        assert issubclass(getattr(errors, name), errors.AuthError)
    assert issubclass(errors.InvalidIdentity, ValueError)
    assert errors.AuthError.__bases__ == (Exception,)
    assert str(errors.TokenInvalid("token expired")) == "token expired"


def test_imports_only_stdlib_joserfc_httpx_cryptography_and_itself() -> None:
    import sys

    for path in AUTH_DIR.glob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Import):
                names = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                names = [node.module]
            else:
                continue
            for name in names:
                top = name.split(".")[0]
                if top == "gateway":
                    assert name.startswith("gateway.auth"), f"{path.name} imports {name}"
                else:
                    assert top in ALLOWED_THIRD_PARTY or top in sys.stdlib_module_names, (
                        f"{path.name} imports {name}"
                    )
