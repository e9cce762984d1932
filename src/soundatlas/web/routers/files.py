"""``GET /api/files/{path}``: a file of the library by its relative path, with HTTP Range.

Only regular files that resolve inside the library root are served; every refusal (``..``,
encoded dots and slashes, absolute paths, backslashes, NUL bytes, hidden files, the atlas, a
symlink whose target is outside) is the same 404, so nothing is learned about what exists
outside the library.
"""

from __future__ import annotations

from fastapi import APIRouter, Request
from fastapi.responses import Response

from soundatlas.web.deps import web_state
from soundatlas.web.responses import file_response, library_file

router = APIRouter(prefix="/api", tags=["files"])


@router.get("/files/{path:path}", summary="A library file by relative path (HTTP Range)",
            response_class=Response, responses={206: {"description": "the requested range"},
                                                404: {"description": "not a file of the library"}})
@router.head("/files/{path:path}", include_in_schema=False)  # GET's headers, no bytes
def get_file(path: str, request: Request) -> Response:
    """``path`` is relative to the library root, with forward slashes. HEAD answers the same
    headers (length, type, ranges) without the bytes."""
    web = web_state(request)
    with web.atlas() as atlas:
        root = atlas.library
    target, st = library_file(root, path, deny=web.atlas_dir)
    return file_response(request, target, st=st)
