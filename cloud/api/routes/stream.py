"""The live stream (``/v1/stream``): Server-Sent Events naming what changed, with resume."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Header, Request
from fastapi.responses import StreamingResponse

from cloud.api.auth import require
from cloud.api.auth_roles import Role
from cloud.api.live import LiveHub

# Public: a browser's EventSource cannot send a key; events carry no figures (docs/api.md).
router = APIRouter(tags=["live"], dependencies=[require(Role.PUBLIC)])

_EXAMPLE = (
    "retry: 3000\n\n"
    "id: 1732906800000-42\nevent: change\n"
    'data: {"site":"rs-kariadi","site_kind":"hospital","kecamatan":"33.74.08",'
    '"kinds":["bed"],"observed_ms":1732906799000}\n\n'
)


@router.get(
    "/v1/stream",
    response_class=StreamingResponse,
    responses={
        200: {
            "description": "an endless `text/event-stream`: `change` and `reset` events",
            "content": {"text/event-stream": {"example": _EXAMPLE}},
        }
    },
)
async def stream(
    request: Request,
    last_event_id: Annotated[str | None, Header(include_in_schema=False)] = None,
) -> StreamingResponse:
    """Server-Sent Events, one ``change`` per message a site's devices sent: the site, its
    kind and kecamatan, the sensor kinds and the newest observation time (``observed_ms``).
    Refetch the site to get the numbers; the API has the reading once the site's
    ``observed_at_newest_ms`` reaches ``observed_ms``. Reconnect with ``Last-Event-ID`` (the
    browser's ``EventSource`` does) to receive what you missed; ``reset`` means refetch all."""
    hub: LiveHub = request.app.state.hub
    return StreamingResponse(
        hub.frames(last_event_id),
        media_type="text/event-stream",
        # Proxies must neither cache nor buffer a stream.
        headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"},
    )
