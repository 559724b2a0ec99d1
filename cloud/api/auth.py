"""Who is calling, and may they read this? Every route declares what it needs in one place:

    from cloud.api.auth import Caller, Role, require

    @router.get("/v1/beds", dependencies=[require(Role.HEALTH_OFFICER, region=("site",))])
    def list_beds(...): ...

    # or, when the route filters a list by the caller's regions:
    def list_beds(caller: Annotated[Caller, require(Role.HEALTH_OFFICER)], ...):
        items = [w for w in items if caller.sees(w.kelurahan)]

``require(role, region=(...), level=...)`` checks, before the route runs:

- the caller's role grants ``role`` (auth_roles.GRANTS), else 401 (anonymous) or 403 (a key);
- each request parameter named in ``region`` (path or query; a site id or any region code
  from the registry) lies within the key's regions, else 403. Codes the registry does not know
  pass through, so the route answers its own 404;
- with ``level`` (the name of a summary-level parameter), a level below kecamatan (site, RW,
  kelurahan) is per-site detail and needs ``health_officer`` even where ``role`` is public.

A route without ``require`` fails tests/integration/test_api_access.py. An anonymous request
(no ``Authorization`` header) has the public role. Without a key store (no
``PANTAU_API_KEYS_DB``) a development API is open (every request may read everything, nothing
is rate limited, as before keys existed); a production API then serves public data only.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Annotated, Any, Protocol, cast

import fastapi.routing
from fastapi import Depends, FastAPI, HTTPException, Request, status
from fastapi.dependencies.models import Dependant
from fastapi.params import Depends as DependsParam
from fastapi.routing import APIRoute
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer

from cloud.api.auth_keys import KeyStore
from cloud.api.auth_limits import RateLimiter
from cloud.api.auth_roles import FINE_LEVELS, GRANTS, RegionIndex, Role
from cloud.api.config import ApiSettings
from contract.secrets import bounded_echo

__all__ = [
    "Caller",
    "CallerDep",
    "Requirement",
    "Role",
    "RouteLike",
    "api_routes",
    "current_caller",
    "install",
    "open_keys",
    "require",
    "requirement_of",
]

log = logging.getLogger(__name__)

_bearer = HTTPBearer(
    auto_error=False,
    scheme_name="ApiKey",
    description="An API key from `pantau api key create`, as `Authorization: Bearer <key>`. "
    "Without it a request has the public role.",
)
_CHALLENGE = {"WWW-Authenticate": "Bearer"}


@dataclass(frozen=True, slots=True)
class Caller:
    """Who is calling: a role, the regions its restricted reads are limited to (None: all)
    and the key's id (None: anonymous or an open API)."""

    role: Role
    regions: frozenset[str] | None
    key_id: str | None
    index: RegionIndex | None = field(default=None, repr=False)

    def may(self, role: Role) -> bool:
        """Whether this caller's role grants ``role``."""
        return role in GRANTS[self.role]

    def sees(self, code: str) -> bool:
        """Whether restricted data about ``code`` (a site, sensor, gateway or region code) is
        within this caller's regions."""
        if self.regions is None:
            return True
        return self.index is not None and self.index.inside(code, self.regions)

    def describe(self) -> str:
        return "an anonymous request" if self.key_id is None else f"key {self.key_id}"


@dataclass(frozen=True, slots=True)
class Requirement:
    """What a route declared with :func:`require`."""

    role: Role
    region: tuple[str, ...] = ()
    level: str | None = None

    def role_for(self, request: Request) -> Role:
        """The role this request needs: ``role``, raised to health officer for a fine level."""
        if self.level is not None and self.role is Role.PUBLIC:
            # Every value counts: a parameter given twice must not pass on its first one.
            values = request.query_params.getlist(self.level)
            values.append(str(request.path_params.get(self.level, "")))
            if not FINE_LEVELS.isdisjoint(values):
                return Role.HEALTH_OFFICER
        return self.role

    def check(self, request: Request, caller: Caller) -> None:
        """Raise 401/403 unless ``caller`` may make ``request``."""
        needed = self.role_for(request)
        if not caller.may(needed):
            if caller.key_id is None:
                raise HTTPException(
                    status.HTTP_401_UNAUTHORIZED,
                    f"this needs an API key with the {needed.value} role; send it as "
                    "'Authorization: Bearer <key>'",
                    headers=_CHALLENGE,
                )
            raise HTTPException(
                status.HTTP_403_FORBIDDEN,
                f"{caller.describe()} has the {caller.role.value} role; this needs {needed.value}",
            )
        if caller.regions is None or needed is Role.PUBLIC:
            return
        for name in self.region:
            values = request.query_params.getlist(name)
            if name in request.path_params:
                values.append(str(request.path_params[name]))
            for value in values:
                known = caller.index is not None and value in caller.index
                if known and not caller.sees(value):
                    raise HTTPException(
                        status.HTTP_403_FORBIDDEN,
                        f"{caller.describe()} may read {', '.join(sorted(caller.regions))}; "
                        f"{name} {bounded_echo(value)} is outside them",
                    )


_REQUIREMENTS: dict[Callable[..., Any], Requirement] = {}


def _keys(request: Request) -> KeyStore | None:
    keys: KeyStore | None = getattr(request.app.state, "keys", None)
    return keys


def _index(request: Request) -> RegionIndex:
    index: RegionIndex | None = getattr(request.app.state, "region_index", None)
    if index is None:
        index = RegionIndex(registry=request.app.state.registry)
        request.app.state.region_index = index
    return index


def _limit(request: Request, bucket: str, rate_per_min: int, who: str) -> None:
    limiter: RateLimiter = request.app.state.limiter
    wait_s = limiter.take(bucket, rate_per_min=rate_per_min)
    if wait_s:
        raise HTTPException(
            status.HTTP_429_TOO_MANY_REQUESTS,
            f"{who} is limited to {rate_per_min} requests a minute; retry in {wait_s} s",
            headers={"Retry-After": str(wait_s)},
        )


async def current_caller(
    request: Request,
    credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer)],
) -> Caller:
    """The caller of this request, rate-limited: 401 for an unknown, revoked or malformed key
    (or an ``Authorization`` header that is not ``Bearer``), 429 when over its limit."""
    keys = _keys(request)
    settings: ApiSettings = request.app.state.settings
    if keys is None and settings.mode == "development":
        return Caller(role=Role.ADMIN, regions=None, key_id=None)
    address = request.client.host if request.client else "unknown"
    anonymous = f"address {address}"
    if credentials is None:
        _limit(request, f"addr:{address}", settings.api_anonymous_rate_per_min, anonymous)
        if "authorization" in request.headers:
            raise HTTPException(
                status.HTTP_401_UNAUTHORIZED,
                "send the API key as 'Authorization: Bearer <key>'",
                headers=_CHALLENGE,
            )
        return Caller(role=Role.PUBLIC, regions=frozenset(), key_id=None, index=_index(request))
    record = None if keys is None else keys.lookup(credentials.credentials)
    if record is None:
        # Failed attempts count against the address, like anonymous calls.
        _limit(request, f"addr:{address}", settings.api_anonymous_rate_per_min, anonymous)
        raise HTTPException(
            status.HTTP_401_UNAUTHORIZED, "unknown or revoked API key", headers=_CHALLENGE
        )
    rate = record.rate_per_min or settings.api_rate_per_min
    _limit(request, f"key:{record.id}", rate, f"key {record.id}")
    regions = None if record.role is Role.ADMIN or not record.regions else frozenset(record.regions)
    return Caller(role=record.role, regions=regions, key_id=record.id, index=_index(request))


CallerDep = Annotated[Caller, Depends(current_caller)]


def require(role: Role, *, region: tuple[str, ...] = (), level: str | None = None) -> DependsParam:
    """The one-line access declaration of a route (see the module docstring). Use it in
    ``dependencies=[...]`` or as ``Annotated[Caller, require(...)]`` to get the caller."""
    need = Requirement(role=role, region=region, level=level)

    async def check_access(request: Request, caller: CallerDep) -> Caller:
        need.check(request, caller)
        return caller

    _REQUIREMENTS[check_access] = need
    declared: DependsParam = Depends(check_access)
    return declared


class RouteLike(Protocol):
    """What an app's route offers, whichever way FastAPI stores included routers."""

    path_format: str
    methods: set[str] | None
    dependant: Dependant


def api_routes(app: FastAPI) -> list[RouteLike]:
    """Every API route of ``app`` as served (router prefixes and dependencies applied); the
    docs pages and ``/openapi.json`` are not API routes."""
    iterate = getattr(fastapi.routing, "iter_route_contexts", None)
    if iterate is None:  # FastAPI that copies included routes into app.routes
        return [cast(RouteLike, r) for r in app.routes if isinstance(r, APIRoute)]
    return [
        cast(RouteLike, ctx)
        for ctx in iterate(app.routes)
        if isinstance(ctx.original_route, APIRoute)
    ]


def requirement_of(route: RouteLike) -> Requirement | None:
    """What ``route`` declared with :func:`require` (None: nothing, which the tests refuse)."""
    for dep in route.dependant.dependencies:
        if dep.call is not None and dep.call in _REQUIREMENTS:
            return _REQUIREMENTS[dep.call]
    return None


def _error(description: str, **headers: Any) -> dict[str, Any]:
    body = {
        "type": "object",
        "properties": {"detail": {"type": "string"}},
        "required": ["detail"],
    }
    out: dict[str, Any] = {
        "description": description,
        "content": {"application/json": {"schema": body}},
    }
    if headers:
        out["headers"] = headers
    return out


def _access_line(need: Requirement) -> str:
    line = f"**Access:** `{need.role.value}`"
    if need.level:
        line += f" (`{need.level}` below kecamatan: `health_officer`)"
    if need.region:
        line += "; `" + "`, `".join(need.region) + "` must lie in the key's regions"
    return line + "."


def document_access(app: FastAPI) -> None:
    """Add each route's access rule and its 401/403/429 answers to the OpenAPI document."""
    build = app.openapi

    def openapi() -> dict[str, Any]:
        if app.openapi_schema is not None:
            return app.openapi_schema
        schema = build()
        for route in api_routes(app):
            need = requirement_of(route)
            if need is None or route.path_format not in schema.get("paths", {}):
                continue
            for method in route.methods or ():
                op = schema["paths"][route.path_format].get(method.lower())
                if op is None:
                    continue
                op["description"] = f"{op.get('description', '')}\n\n{_access_line(need)}".strip()
                responses = op.setdefault("responses", {})
                responses.setdefault("401", _error("no key where one is needed, or a bad key"))
                if need.role is not Role.PUBLIC or need.level or need.region:
                    responses.setdefault("403", _error("the key's role or regions do not allow it"))
                retry = {"description": "seconds to wait", "schema": {"type": "integer"}}
                responses.setdefault("429", _error("rate limit reached", **{"Retry-After": retry}))
        return schema

    app.openapi = openapi  # type: ignore[method-assign]


def install(app: FastAPI, settings: ApiSettings) -> None:
    """Give ``app`` its key store (opened in the lifespan, :func:`open_keys`), its rate limiter
    and each route's access rule in the OpenAPI document. No I/O."""
    app.state.keys = None if settings.api_keys_db is None else KeyStore(path=settings.api_keys_db)
    app.state.limiter = RateLimiter()
    document_access(app)


@contextlib.contextmanager
def open_keys(app: FastAPI) -> Iterator[None]:
    """Open the key store for the app's lifetime (the lifespan); warn when the API is open."""
    keys: KeyStore | None = app.state.keys
    if keys is None:
        settings: ApiSettings = app.state.settings
        if settings.mode == "development":
            log.warning(
                "no key store (PANTAU_API_KEYS_DB): the API is open, every request may read "
                "everything; development only"
            )
        else:
            log.warning("no key store (PANTAU_API_KEYS_DB): every request has the public role")
        yield
        return
    keys.open()
    log.info("API keys from %s", keys.path)
    try:
        yield
    finally:
        keys.close()
