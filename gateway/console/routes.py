"""`mount(app)`: the console's routers and its static files on the API's application."""

from __future__ import annotations

from fastapi import FastAPI
from fastapi.staticfiles import StaticFiles

from gateway.console import signin
from gateway.console.pages import analyst, auditor, common, datasets, officer, owner

ROUTERS = tuple(m.router for m in (signin, common, analyst, owner, datasets, officer, auditor))


def mount(app: FastAPI) -> None:
    for router in ROUTERS:
        app.include_router(router)
    app.mount(
        "/console/static",
        StaticFiles(packages=[("gateway.console", "static")]),
        name="console-static",
    )
