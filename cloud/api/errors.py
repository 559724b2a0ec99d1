"""How the API answers errors without leaking: request ids, and one handler per kind of error.

A 5xx body is ``{"detail": <one line>, "request_id": <id>}`` and nothing else: no InfluxDB URL
(it may hold ``user:pass@``), no InfluxQL, no upstream error text. Those go to the server log
under the same request id, which the response also carries in ``X-Request-ID``, so an operator
can find the cause from what a user reports. 4xx bodies name the parameter and quote at most
:data:`~contract.secrets.ECHO_MAX_CHARS` characters of what was sent.
"""

from __future__ import annotations

import logging
import re
import uuid

from fastapi import FastAPI, Request, status
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.datastructures import MutableHeaders
from starlette.exceptions import HTTPException
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from cloud.influx import QueryError
from contract.errors import StorageError
from contract.secrets import bounded_echo, redact_url

log = logging.getLogger(__name__)

REQUEST_ID_HEADER = "X-Request-ID"
#: An id a proxy in front of us assigned is kept if it looks like one; anything else (a log
#: line injection, a kilobyte of text) is replaced by our own.
_GOOD_ID = re.compile(r"^[A-Za-z0-9._:-]{1,64}$")
#: A 4xx detail is cut to this many characters whatever a route put in it.
DETAIL_MAX_CHARS = 2000
STORAGE_UNAVAILABLE = "the time-series store is unavailable; try again shortly"
INTERNAL_ERROR = "internal error; quote the request id when reporting it"


class RequestIdMiddleware:
    """Gives every HTTP request an id (``request.state.request_id``) and every response the
    ``X-Request-ID`` header."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        incoming = dict(scope.get("headers", ())).get(b"x-request-id", b"").decode("latin-1")
        request_id = incoming if _GOOD_ID.match(incoming) else uuid.uuid4().hex
        scope.setdefault("state", {})["request_id"] = request_id

        async def send_with_id(message: Message) -> None:
            if message["type"] == "http.response.start":
                MutableHeaders(scope=message)[REQUEST_ID_HEADER] = request_id
            await send(message)

        await self.app(scope, receive, send_with_id)


def request_id_of(request: Request) -> str:
    """The id :class:`RequestIdMiddleware` gave this request (a fresh one without it)."""
    rid = getattr(request.state, "request_id", None)
    return rid if isinstance(rid, str) else uuid.uuid4().hex


def _server_error(request: Request, code: int, detail: str, **headers: str) -> JSONResponse:
    rid = request_id_of(request)
    return JSONResponse(
        status_code=code,
        content={"detail": detail, "request_id": rid},
        headers={REQUEST_ID_HEADER: rid, **headers},
    )


async def storage_unavailable(request: Request, exc: Exception) -> JSONResponse:
    """503 with a request id; the cause (InfluxDB's reason, the query) is logged under it."""
    query = f"; query: {exc.query}" if isinstance(exc, QueryError) else ""
    log.warning(
        "request %s %s: InfluxDB unavailable: %s%s",
        request_id_of(request),
        request.url.path,
        redact_url(str(exc)),
        query,
    )
    return _server_error(
        request, status.HTTP_503_SERVICE_UNAVAILABLE, STORAGE_UNAVAILABLE, **{"Retry-After": "5"}
    )


async def internal_error(request: Request, exc: Exception) -> JSONResponse:
    """500 with a request id for a bug; the traceback is logged under that id."""
    log.error("request %s %s failed", request_id_of(request), request.url.path, exc_info=exc)
    return _server_error(request, status.HTTP_500_INTERNAL_SERVER_ERROR, INTERNAL_ERROR)


async def invalid_request(request: Request, exc: Exception) -> JSONResponse:
    """FastAPI's list of validation errors as one sentence, quoting a bounded part of the
    input."""
    problems = []
    for err in exc.errors() if isinstance(exc, RequestValidationError) else []:
        loc = [str(p) for p in err.get("loc", ())]
        where = f"{loc[0]} parameter {'.'.join(loc[1:])!r}" if len(loc) > 1 else ".".join(loc)
        given = err.get("input")
        got = f" (got {bounded_echo(given)})" if given is not None else ""
        problems.append(f"{where}: {err.get('msg', 'invalid')}{got}")
    return JSONResponse(
        status_code=status.HTTP_422_UNPROCESSABLE_CONTENT,
        content={"detail": _bounded("; ".join(problems) or "invalid request")},
    )


async def http_error(request: Request, exc: Exception) -> JSONResponse:
    """A route's ``HTTPException`` with its detail bounded in length."""
    if not isinstance(exc, HTTPException):  # pragma: no cover - registered for HTTPException
        raise exc
    if exc.status_code >= 500:
        log.warning("request %s %s: %s", request_id_of(request), request.url.path, exc.detail)
        return _server_error(request, exc.status_code, "service error", **(exc.headers or {}))
    return JSONResponse(
        status_code=exc.status_code,
        content={"detail": _bounded(str(exc.detail))},
        headers=exc.headers,
    )


def _bounded(detail: str) -> str:
    if len(detail) <= DETAIL_MAX_CHARS:
        return detail
    return f"{detail[:DETAIL_MAX_CHARS]}... ({len(detail)} characters, cut)"


def install(app: FastAPI) -> None:
    """Register the request-id middleware and every error handler on ``app``."""
    app.add_middleware(RequestIdMiddleware)
    app.add_exception_handler(StorageError, storage_unavailable)
    app.add_exception_handler(RequestValidationError, invalid_request)
    app.add_exception_handler(HTTPException, http_error)
    app.add_exception_handler(Exception, internal_error)
