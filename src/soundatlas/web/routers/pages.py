"""The page itself (``/``), its static files' folder, and ``/docs``: the API described from its
own OpenAPI document, without the network (FastAPI's Swagger UI loads its script from a CDN)."""

from __future__ import annotations

import html
from pathlib import Path

from fastapi import APIRouter, Request
from fastapi.responses import FileResponse, HTMLResponse

router = APIRouter(include_in_schema=False)

STATIC_DIR = Path(__file__).parent.parent / "static"


@router.get("/")
def index_page() -> FileResponse:
    """The page."""
    return FileResponse(STATIC_DIR / "index.html", media_type="text/html")


@router.get("/docs")
def docs_page(request: Request) -> HTMLResponse:
    """Every endpoint of the app, with its parameters, in one table."""
    return HTMLResponse(docs_html(request.app.openapi()))


def docs_html(spec: dict) -> str:
    """An HTML page describing an API.

    Parameters
    ----------
    spec : dict
        The app's OpenAPI document.

    Returns
    -------
    str
        A page with one table row per method and path: summary, description, parameters.
    """
    rows = []
    for path, ops in spec.get("paths", {}).items():
        for method, op in ops.items():
            params = ", ".join(
                f"{p['name']} ({p['in']}{'' if p.get('required') else ', optional'})"
                for p in op.get("parameters", [])
            )
            body = "body" if "requestBody" in op else ""
            rows.append(
                f"<tr><td><code>{method.upper()}</code></td><td><code>{html.escape(path)}</code>"
                f"</td><td>{html.escape(op.get('summary', ''))}<br><small>"
                f"{html.escape(op.get('description', '') or '')}</small></td>"
                f"<td>{html.escape(', '.join(x for x in (params, body) if x))}</td></tr>"
            )
    title = html.escape(spec.get("info", {}).get("title", "API"))
    return (
        f"<!doctype html><meta charset=utf-8><title>{title} API</title>"
        "<style>body{font:14px system-ui,sans-serif;margin:2em}td{vertical-align:top;"
        "padding:.3em .6em;border-bottom:1px solid #ddd}small{color:#555}</style>"
        f"<h1>{title} API</h1><p>{html.escape(spec.get('info', {}).get('description', ''))}</p>"
        "<p>Machine-readable: <a href=/openapi.json>/openapi.json</a> (OpenAPI "
        f"{html.escape(spec.get('openapi', ''))}). Every error is JSON "
        '<code>{"error": "message"}</code>.</p>'
        "<table><tr><th>method</th><th>path</th><th>what</th><th>parameters</th></tr>"
        + "".join(rows) + "</table>"
    )
