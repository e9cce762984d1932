"""What the web app answers besides plain JSON: its errors, binary arrays, and files.

Every error is JSON ``{"error": "message"}`` with its status (``api_error`` for the app's own,
the handlers installed by ``install_error_handlers`` for the framework's and the project's);
files are served with HTTP Range support; a library file is only ever one that resolves inside
the library root.
"""

from __future__ import annotations

import mimetypes
import os
import stat
import tempfile
import unicodedata
from collections.abc import Callable
from http import HTTPStatus
from pathlib import Path

from fastapi import FastAPI, HTTPException, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import FileResponse, JSONResponse, Response
from starlette.background import BackgroundTask
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.responses import MalformedRangeHeader, RangeNotSatisfiable

from soundatlas.atlas import SampleRecord
from soundatlas.errors import (AudioReadError, DamagedDataError, NotFoundError, ParameterError,
                               SoundAtlasError)

__all__ = ["api_error", "install_error_handlers", "attachment_header", "binary_response",
           "media_type_for", "file_response", "temp_file_response", "library_file",
           "sample_file"]

# a library file's response may not run as a page of this origin (a sample pack's README.html)
_FILE_HEADERS = {"X-Content-Type-Options": "nosniff", "Content-Security-Policy": "sandbox"}
_AUDIO_TYPES = {
    ".wav": "audio/wav", ".wave": "audio/wav", ".bwf": "audio/wav", ".rf64": "audio/wav",
    ".w64": "audio/x-w64", ".aif": "audio/aiff", ".aiff": "audio/aiff", ".aifc": "audio/aiff",
    ".flac": "audio/flac", ".ogg": "audio/ogg", ".oga": "audio/ogg", ".opus": "audio/ogg",
    ".mp3": "audio/mpeg", ".mp2": "audio/mpeg", ".au": "audio/basic", ".snd": "audio/basic",
    ".caf": "audio/x-caf",
}
# -- errors --------------------------------------------------------------------------------------


def api_error(status: int, message: str, *, headers: dict | None = None, **extra) -> HTTPException:
    """An error the app answers as JSON.

    Parameters
    ----------
    status : int
        The HTTP status.
    message : str
        What went wrong, and where it helps what to do instead.
    headers : dict, optional
        Response headers (``Content-Range`` of a 416, say).
    **extra
        More fields of the JSON body.

    Returns
    -------
    fastapi.HTTPException
        To raise; its body is ``{"error": message, **extra}``.
    """
    return HTTPException(status_code=status, detail={"error": message, **extra}, headers=headers)


def install_error_handlers(app: FastAPI) -> None:
    """Make every error of ``app`` a JSON ``{"error": message}`` with its status.

    The framework's own errors (no route, wrong method) say for what; a request that does not
    validate is a 422 listing the problems; a project error is the request's fault (400) when
    it is a bad parameter or file, a 409 when a feature or embedding file of the atlas is damaged
    (the message names it and the repair), else the server's (500); anything else is a 500
    naming the exception.

    Parameters
    ----------
    app : fastapi.FastAPI
        The app to install the handlers on.
    """
    app.add_exception_handler(StarletteHTTPException, _http_error)
    app.add_exception_handler(RequestValidationError, _validation_error)
    app.add_exception_handler(SoundAtlasError, _project_error)
    app.add_exception_handler(Exception, _unexpected_error)


async def _http_error(request: Request, exc: StarletteHTTPException) -> JSONResponse:
    detail = exc.detail
    if isinstance(detail, dict):
        body = detail
    else:
        text = str(detail)
        phrase = _phrase(exc.status_code)
        if text == phrase:  # the framework's own (no route, wrong method): say for what
            text = f"{phrase}: {request.method} {request.url.path}"
        body = {"error": text}
    return JSONResponse(body, status_code=exc.status_code, headers=exc.headers)


async def _validation_error(request: Request, exc: RequestValidationError) -> JSONResponse:
    problems = []
    for e in exc.errors():
        where = ".".join(str(part) for part in e.get("loc", ()))
        problems.append(f"{where}: {e.get('msg', 'invalid')}")
    return JSONResponse({"error": "invalid request: " + "; ".join(problems)}, status_code=422)


async def _project_error(request: Request, exc: SoundAtlasError) -> JSONResponse:
    # a bad parameter or file is the request's fault; a damaged file of the atlas is its state,
    # which the repair the message names mends; anything else (an atlas gone missing or
    # inconsistent, a model that cannot load) is the server's
    status = (404 if isinstance(exc, NotFoundError) else
              400 if isinstance(exc, (ParameterError, AudioReadError)) else
              409 if isinstance(exc, DamagedDataError) else 500)
    return JSONResponse({"error": str(exc)}, status_code=status)


async def _unexpected_error(request: Request, exc: Exception) -> JSONResponse:
    return JSONResponse({"error": f"internal error: {type(exc).__name__}: {exc}"}, status_code=500)


def _phrase(status: int) -> str:
    try:
        return HTTPStatus(status).phrase
    except ValueError:
        return str(status)


# -- binary and file responses -------------------------------------------------------------------


def attachment_header(filename: str) -> str:
    """A Content-Disposition that names a download, whatever its characters.

    Parameters
    ----------
    filename : str
        The name the download should get.

    Returns
    -------
    str
        ``attachment`` with an ASCII fallback ``filename`` and the exact name as RFC 6266/5987
        ``filename*``.
    """
    from urllib.parse import quote

    fallback = "".join(c if c.isascii() and (c.isalnum() or c in "-_.") else "_"
                       for c in filename) or "download"
    return f"attachment; filename=\"{fallback}\"; filename*=UTF-8''{quote(filename, safe='')}"


def binary_response(payload: bytes, headers: dict[str, object]) -> Response:
    """An ``application/octet-stream`` response.

    Parameters
    ----------
    payload : bytes
        The body.
    headers : dict
        Header name to value (each sent as ``str(value)``).

    Returns
    -------
    fastapi.responses.Response
    """
    return Response(payload, media_type="application/octet-stream",
                    headers={k: str(v) for k, v in headers.items()})


def media_type_for(path: str | os.PathLike) -> str:
    """The media type a file is served as: the audio types by extension, else the guess of
    ``mimetypes``, else ``application/octet-stream``."""
    ext = Path(path).suffix.lower()
    if ext in _AUDIO_TYPES:
        return _AUDIO_TYPES[ext]
    return mimetypes.guess_type(Path(path).name)[0] or "application/octet-stream"


def file_response(request: Request, path: Path, *, st: os.stat_result | None = None,
                  media_type: str | None = None, filename: str | None = None,
                  background: BackgroundTask | None = None) -> FileResponse:
    """Stream a file with HTTP Range support (starlette's).

    Parameters
    ----------
    request : fastapi.Request
        The request (its ``Range`` and ``If-Range`` headers decide what is sent).
    path : Path
        The file.
    st : os.stat_result, optional
        The file's stat, when the caller has it.
    media_type : str, optional
        Default: ``media_type_for(path)``.
    filename : str, optional
        Sent as an attachment of that name.
    background : starlette.background.BackgroundTask, optional
        Run once the response is sent, or at once when the request is refused.

    Returns
    -------
    fastapi.responses.FileResponse

    Raises
    ------
    fastapi.HTTPException
        400 for a malformed Range, 416 for one outside the file.
    """
    st = st or os.stat(path)
    response = FileResponse(path, stat_result=st, media_type=media_type or media_type_for(path),
                            filename=filename, headers=_FILE_HEADERS, background=background)
    http_range = request.headers.get("range")
    if http_range is None or request.method not in ("GET", "HEAD"):
        return response
    if_range = request.headers.get("if-range")
    if if_range is not None and (if_range.startswith("W/") or if_range not in (
            response.headers["etag"], response.headers["last-modified"])):
        return response  # the file changed since: the whole file, as RFC 9110 says
    try:
        FileResponse._parse_range_header(http_range, st.st_size)  # noqa: SLF001 - same rules
    except MalformedRangeHeader as exc:
        _cleanup(background)
        raise api_error(400, f"bad Range header {http_range!r}: {exc.content}") from None
    except RangeNotSatisfiable:
        _cleanup(background)
        raise api_error(416, f"Range {http_range!r} is outside the file ({st.st_size} bytes)",
                        headers={"Content-Range": f"bytes */{st.st_size}"}) from None
    return response


def _cleanup(background) -> None:
    if background is not None:
        background.func(*background.args, **background.kwargs)


def temp_file_response(request: Request, write: Callable[[Path], None], *, prefix: str,
                       suffix: str, media_type: str,
                       filename: str | None = None) -> FileResponse:
    """Write a temporary file and serve it like a file of the library; it is removed once sent.

    Parameters
    ----------
    request : fastapi.Request
        The request (Range included).
    write : callable
        ``write(path)`` fills the file; whatever it raises is raised, the file removed.
    prefix, suffix : str
        Of the temporary file's name.
    media_type : str
        The response's media type.
    filename : str, optional
        Sent as an attachment of that name.

    Returns
    -------
    fastapi.responses.FileResponse
    """
    fd, tmp = tempfile.mkstemp(prefix=prefix, suffix=suffix)
    os.close(fd)
    try:
        write(Path(tmp))
    except BaseException:
        os.unlink(tmp)
        raise
    return file_response(request, Path(tmp), media_type=media_type, filename=filename,
                         background=BackgroundTask(os.unlink, tmp))


def library_file(root: Path, rel: str, *, deny: Path | None = None) -> tuple[Path, os.stat_result]:
    """The regular file at a relative path inside the library.

    Refused: ``..``, an absolute path, a backslash or NUL, a hidden file or folder (the atlas
    usually lives in one), anything under ``deny``, and a symlink whose target resolves outside
    the root. The path is the server's once-decoded one and is never decoded again, so a ``%``
    left in it is the file name's own (``50%25 mix.wav`` is a name a library may hold): a
    twice-encoded ``%252e%252e`` names a folder called ``%2e%2e``, inside the root like any
    other name.

    Parameters
    ----------
    root : Path
        The library root.
    rel : str
        The path relative to ``root``, with forward slashes.
    deny : Path, optional
        A folder never served (the atlas directory).

    Returns
    -------
    (Path, os.stat_result)
        The resolved file and its stat.

    Raises
    ------
    fastapi.HTTPException
        404 for every refusal alike, saying nothing of what exists outside.
    """
    refused = api_error(404, f"not a file of the library: {rel!r}")
    if not rel or "\x00" in rel or "\\" in rel:
        raise refused
    if rel.startswith("/"):  # (a drive, C:/..., resolves outside the root: refused below)
        raise refused
    for part in rel.split("/"):
        # NFKC folds look-alike dots (one-dot leader, fullwidth full stop) into '.'
        folded = unicodedata.normalize("NFKC", part)
        if folded.startswith(".") and part != ".":
            raise refused
    try:
        real_root = root.resolve()
        target = (root / rel).resolve()
        inside = target.relative_to(real_root)
        if not inside.parts or any(p.startswith(".") for p in inside.parts):
            raise refused
        if deny is not None and target.is_relative_to(deny.resolve()):
            raise refused
        st = os.stat(target)
    except (OSError, RuntimeError, ValueError):
        raise refused from None
    if not stat.S_ISREG(st.st_mode):
        raise refused
    return target, st


def sample_file(root: Path, record: SampleRecord) -> tuple[Path, os.stat_result]:
    """The indexed file of a sample (which may live in a symlinked folder the scan followed).

    Parameters
    ----------
    root : Path
        The library root.
    record : SampleRecord
        The sample.

    Returns
    -------
    (Path, os.stat_result)
        The file and its stat.

    Raises
    ------
    fastapi.HTTPException
        404 when the file is no longer a regular file of the library.
    """
    rel = record.path
    gone = api_error(404, f"sample {record.id}'s file {rel!r} is no longer in the library")
    if rel.startswith("/") or ".." in rel.split("/"):
        raise gone
    path = root / rel
    try:
        st = os.stat(path)
    except OSError:
        raise gone from None
    if not stat.S_ISREG(st.st_mode):
        raise gone
    return path, st
