"""The data owner registers a dataset from a file under its department's data folder: the
schema is inferred from the file by the engine and each column's sensitivity chosen (every
column starts as `sensitive`: fail closed), then `catalogue.register` does what
`POST /v1/datasets` does (provider check, declared schema against the file, audit).

Listing the department's files is gated by the same decision as registering
(`dataset register`); the page shows paths relative to `<home>/data/<department>/` only.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Depends, Query, Request, Response
from fastapi.responses import RedirectResponse
from pydantic import ValidationError

from gateway.authz import require
from gateway.catalogue import registry as catalogue
from gateway.catalogue.documents import DatasetSpec
from gateway.console.web import Caller, ConsoleRoute, call, caller, gateway, page, posted
from gateway.context import Gateway
from gateway.errors import InvalidInput
from gateway.store import db
from sandbox import TableSource

router = APIRouter(prefix="/console", route_class=ConsoleRoute, include_in_schema=False)
Who = Annotated[Caller, Depends(caller)]
Format = Literal["parquet", "csv"]
FORMATS: dict[str, Format] = {".parquet": "parquet", ".csv": "csv"}
SENSITIVITIES = ("sensitive", "identifier", "quasi_identifier", "public")
MAX_FILES = 500


def _may_register(gw: Gateway, who: Caller) -> None:
    require(gw, who.principal, "dataset", "register", event="dataset.denied", target="datasets")


def _files(gw: Gateway, department: str) -> list[str]:
    """The department's unregistered source files, relative to its data folder."""
    root = (gw.data_root / department).resolve()
    if not root.is_dir():
        return []
    with db.reading(gw.db) as conn:
        registered = {
            catalogue.source_path(gw, d)
            for d in catalogue.list_all(conn)
            if d.provider == department
        }
    found = []
    for path in sorted(root.rglob("*"))[: MAX_FILES * 4]:
        real = path.resolve()
        usable = path.suffix in FORMATS and real.is_file() and real.is_relative_to(root)
        if usable and real not in registered:
            found.append(path.relative_to(root).as_posix())
    return found[:MAX_FILES]


def _chosen(gw: Gateway, who: Caller, file: str) -> tuple[Format, Path]:
    if file not in _files(gw, who.session.department):
        raise InvalidInput("choose one of your department's unregistered files")
    return FORMATS[Path(file).suffix], gw.data_root / who.session.department / file


@router.get("/datasets/new")
def new_dataset(
    request: Request, who: Who, file: Annotated[str, Query(max_length=300)] = ""
) -> Response:
    gw = gateway(request)
    _may_register(gw, who)
    columns: list[tuple[str, str]] = []
    if file:
        fmt, path = _chosen(gw, who, file)
        source = TableSource(f"{who.session.department}.new", fmt, path.resolve())
        columns = list(gw.engine.infer_schema(source))
    return page(
        request,
        who,
        "dataset_new.html",
        files=_files(gw, who.session.department),
        file=file,
        columns=columns,
        sensitivities=SENSITIVITIES,
        suggested=Path(file).stem.lower().replace("-", "_") if file else "",
    )


def _document(who: Caller, file: str, fmt: str, form: Any) -> dict[str, Any]:
    dept = who.session.department
    columns = []
    for i in range(int(form.get("columns") or 0)):
        if form.get(f"col.{i}.include") != "yes":
            continue
        columns.append(
            {
                "name": form.get(f"col.{i}.name"),
                "type": form.get(f"col.{i}.type"),
                "sensitivity": form.get(f"col.{i}.sensitivity"),
            }
        )
    min_group = form.get("min_group_size")
    return {
        "id": f"{dept}.{form.get('name').strip()}",
        "title": form.get("title").strip(),
        "description": form.get("description").strip(),
        "provider": dept,
        "source": {"format": fmt, "path": f"data/{dept}/{file}"},
        "share_class": form.get("share_class"),
        "classification": form.get("classification"),
        "update_cycle": form.get("update_cycle").strip() or "unspecified",
        "columns": columns,
        "disclosure": {"min_group_size": int(min_group) if min_group.isdigit() else 10},
    }


@router.post("/datasets")
async def register(request: Request, who: Who) -> Response:
    form = await posted(request, who)
    gw = gateway(request)
    file = form.get("file")
    fmt, _ = await call(_chosen, gw, who, file)
    try:
        spec = DatasetSpec.model_validate(_document(who, file, fmt, form))
    except (ValidationError, ValueError) as exc:
        first = exc.errors()[0] if isinstance(exc, ValidationError) else {"msg": str(exc)}
        where = ".".join(str(p) for p in first.get("loc", ()))
        raise InvalidInput(f"{where}: {first['msg']}" if where else str(first["msg"])) from None
    registered = await call(catalogue.register, gw, who.principal, spec)
    return RedirectResponse(f"/console/catalogue#{registered.id}", status_code=303)
