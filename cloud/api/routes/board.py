"""The public bed board (``/board``): static HTML, CSS and JS from ``cloud/api/board/``, no
build step. The page reads the public endpoints and follows ``/v1/stream``."""

from __future__ import annotations

from pathlib import Path

from fastapi import APIRouter, HTTPException, status
from fastapi.responses import FileResponse

from cloud.api.auth import require
from cloud.api.auth_roles import Role

# Public by design: a citizen's phone has no key, and EventSource cannot send one.
router = APIRouter(include_in_schema=False, dependencies=[require(Role.PUBLIC)])

BOARD_DIR = Path(__file__).resolve().parent.parent / "board"
#: Served by name only: the route never maps a request path onto the file system.
_ASSETS = {
    "board.css": "text/css; charset=utf-8",
    "board.js": "text/javascript; charset=utf-8",
    "i18n.js": "text/javascript; charset=utf-8",
}
_NO_STORE = {"Cache-Control": "no-cache"}


@router.get("/board")
def board() -> FileResponse:
    """The board page."""
    return FileResponse(
        BOARD_DIR / "index.html", media_type="text/html; charset=utf-8", headers=_NO_STORE
    )


@router.get("/board/{asset}")
def board_asset(asset: str) -> FileResponse:
    """One of the page's scripts or its style sheet."""
    media = _ASSETS.get(asset)
    if media is None:
        raise HTTPException(status.HTTP_404_NOT_FOUND, "no such board file")
    return FileResponse(BOARD_DIR / asset, media_type=media, headers=_NO_STORE)
