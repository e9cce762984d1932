"""Uploaded audio (query by example, mosaic): a multipart field ``file`` streamed to a temporary
file, refused as soon as it passes the app's size limit."""

from __future__ import annotations

import contextlib
import errno
import os
import shutil
import tempfile
from pathlib import Path

from fastapi import Request
from starlette.concurrency import run_in_threadpool
from starlette.datastructures import UploadFile
from starlette.formparsers import MultiPartException, MultiPartParser

from soundatlas.errors import is_disk_full
from soundatlas.web.deps import web_state
from soundatlas.web.responses import api_error

__all__ = ["UPLOAD_BODY", "receive_upload", "run_on_upload"]

#: the OpenAPI request body of an endpoint that takes an upload (``openapi_extra``)
UPLOAD_BODY = {"requestBody": {"required": True, "content": {"multipart/form-data": {"schema": {
    "type": "object", "required": ["file"],
    "properties": {"file": {"type": "string", "format": "binary"}}}}}}}

_UPLOAD_SLACK = 64 * 1024  # multipart headers and boundaries around the file's bytes


class _TooLarge(Exception):
    pass


def _no_room_for(exc: BaseException) -> bool:
    """A write refused for room: a full device or quota (``errors.is_disk_full``), or a limit
    on file size (EFBIG)."""
    return is_disk_full(exc) or (isinstance(exc, OSError) and exc.errno == errno.EFBIG)


async def receive_upload(request: Request, limit: int) -> tuple[Path, str]:
    """Stream the multipart body's ``file`` to a temporary file.

    Parameters
    ----------
    request : fastapi.Request
        A ``multipart/form-data`` request with the audio in a field named ``file``.
    limit : int
        The largest file in bytes; the rest of a larger body is never read.

    Returns
    -------
    (Path, str)
        The temporary file (the caller removes it) and the upload's own file name (without
        folders).

    Raises
    ------
    fastapi.HTTPException
        400 for a body that is not such a form, 413 as soon as the file passes ``limit``, 507
        when the temporary folder cannot take the file (full, or a file size limit), naming
        the folder; the part written is removed.
    """
    too_large = api_error(413, f"the upload is larger than the limit of {limit} bytes")
    media_type = request.headers.get("content-type", "").split(";", 1)[0].strip().lower()
    if media_type != "multipart/form-data":  # media types ignore case (RFC 9110)
        raise api_error(400, "send the audio file as multipart/form-data in a field named 'file'")
    declared = request.headers.get("content-length", "")
    if declared.isdigit() and int(declared) > limit + _UPLOAD_SLACK:
        raise too_large

    closing = _closing_delimiter(request.headers["content-type"])
    tail = bytearray()  # the body's last bytes: did it end with its closing boundary?

    async def limited():
        n = 0
        async for chunk in request.stream():
            n += len(chunk)
            if n > limit + _UPLOAD_SLACK:
                raise _TooLarge
            if closing:
                tail[:] = (bytes(tail) + chunk)[-(len(closing) + 4):]
            yield chunk

    parser = MultiPartParser(request.headers, limited(), max_files=1, max_fields=16)
    try:
        form = await parser.parse()  # a file over 1 MB is spooled to the temporary folder
    except _TooLarge:
        raise too_large from None
    except MultiPartException as exc:
        raise api_error(400, f"bad multipart upload: {exc.message}") from None
    except OSError as exc:
        if _no_room_for(exc):
            raise _no_room(tempfile.gettempdir(), exc) from None
        raise
    try:
        upload = form.get("file")
        if not isinstance(upload, UploadFile):
            if closing and closing not in tail:  # the parser drops a part cut short
                raise api_error(400, "the upload was cut short: the multipart body ended "
                                "before its closing boundary; send the whole file")
            raise api_error(400, "no file in the upload: send it in a multipart field named 'file'")
        if upload.size is not None and upload.size > limit:
            raise too_large
        filename = Path(upload.filename or "upload").name or "upload"  # ('.' has no name)
        suffix = Path(filename).suffix.lower()
        suffix = suffix if suffix.isascii() and suffix[1:].isalnum() else ""
        fd, tmp = tempfile.mkstemp(prefix="soundatlas-query-", suffix=suffix)
        try:
            with os.fdopen(fd, "wb") as out:
                await run_in_threadpool(shutil.copyfileobj, upload.file, out)
        except BaseException as exc:  # a full disk, or the client gone: nothing left behind
            with contextlib.suppress(OSError):
                os.unlink(tmp)
            if _no_room_for(exc):
                raise _no_room(Path(tmp).parent, exc) from None
            raise
        return Path(tmp), filename
    finally:
        await form.close()


def _no_room(folder, exc: OSError):
    return api_error(507, f"the upload could not be stored in {folder}: "
                     f"{os.strerror(exc.errno)}; free some space there, or start the server "
                     "with TMPDIR set to a folder with room")


def _closing_delimiter(content_type: str) -> bytes:
    """``--BOUNDARY--``, which ends a whole multipart body (RFC 2046), read from the
    Content-Type as starlette's parser reads it; empty when it names no boundary."""
    from starlette.formparsers import parse_options_header

    _, params = parse_options_header(content_type)
    boundary = params.get(b"boundary")
    return b"--" + boundary + b"--" if boundary else b""


async def run_on_upload(request: Request, work, *args, runner=None):
    """Receive the request's upload, hand it to ``work`` in a worker thread, then remove it.

    Parameters
    ----------
    request : fastapi.Request
        The upload request (see ``receive_upload``; the app's ``max_upload_bytes`` is the
        limit).
    work : callable
        ``work(web, path, filename, *args)``: the app's ``WebState``, the temporary file and
        the upload's file name, then ``args``.
    *args
        Passed on to ``work``.
    runner : callable, optional
        ``await runner(work, web, path, filename, *args)`` runs it (default: in the thread
        pool; renders pass one that queues them and stops them when the client goes).

    Returns
    -------
    object
        What ``work`` returns.
    """
    web = web_state(request)
    path, filename = await receive_upload(request, web.max_upload_bytes)
    try:
        return await (runner or run_in_threadpool)(work, web, path, filename, *args)
    finally:
        path.unlink(missing_ok=True)
