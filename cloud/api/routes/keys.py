"""The key list (``/v1/keys``) for admins: who can read what. Keys are created and revoked with
``pantau api key``, on the machine that holds the key file, never over HTTP."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, HTTPException, Request, status
from pydantic import ConfigDict, Field

from cloud.api.auth import Role, require
from cloud.api.auth_keys import KeyStore
from cloud.api.models import ErrorBody, _List, _Out

router = APIRouter(tags=["keys"])


class ApiKeyInfo(_Out):
    """One API key's record (``pantau api key create``); never the key or its digest."""

    model_config = ConfigDict(
        frozen=True,
        json_schema_extra={
            "examples": [
                {
                    "id": "3f9a0c5e71d2",
                    "name": "Dinkes Kota Semarang",
                    "role": "health_officer",
                    "regions": ["33.74"],
                    "rate_per_min": None,
                    "created_at": "2026-11-29T03:00:00Z",
                    "revoked_at": None,
                }
            ]
        },
    )

    id: str
    name: str
    role: Role
    regions: list[str] = Field(description="region codes of restricted reads; [] = every region")
    rate_per_min: int | None = Field(description="null: the API's PANTAU_API_RATE_PER_MIN")
    created_at: str
    revoked_at: str | None


class ApiKeyList(_List):
    """Every key, revoked ones included, oldest first."""

    items: list[ApiKeyInfo]


_ERRORS: dict[int | str, dict[str, Any]] = {
    404: {"model": ErrorBody, "description": "the API has no key store (PANTAU_API_KEYS_DB)"},
}


@router.get(
    "/v1/keys", response_model=ApiKeyList, responses=_ERRORS, dependencies=[require(Role.ADMIN)]
)
async def list_keys(request: Request) -> ApiKeyList:
    """Every API key's record (id, name, role, regions, rate, created, revoked), oldest first;
    never a key or its digest."""
    keys: KeyStore | None = request.app.state.keys
    if keys is None:
        raise HTTPException(
            status.HTTP_404_NOT_FOUND, "this API has no key store (set PANTAU_API_KEYS_DB)"
        )
    return ApiKeyList(
        items=[
            ApiKeyInfo(
                id=k.id,
                name=k.name,
                role=k.role,
                regions=list(k.regions),
                rate_per_min=k.rate_per_min,
                created_at=k.created_at,
                revoked_at=k.revoked_at,
            )
            for k in keys.records()
        ]
    )
