"""``soundatlas serve``: the web app (a read-only JSON/binary API over an atlas) and its page."""

from soundatlas.web.app import create_app

__all__ = ["create_app"]
