"""The one place that speaks InfluxDB: line protocol formatting, ``/write`` and ``/query``.

Only the 1.x HTTP API is used (line protocol on ``/write``, InfluxQL on ``/query``): InfluxDB
1.x serves it natively, 2.x through its compatibility API (DBRP mappings), 3.x natively.
See docs/adr/0001-influxdb-v1-http-api.md.
"""

from __future__ import annotations

import math
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from email.utils import parsedate_to_datetime
from types import TracebackType
from typing import Any, Self
from urllib.parse import unquote, urlsplit, urlunsplit

import httpx
from pydantic import SecretStr

from contract.errors import PantauError, StorageError
from contract.secrets import redact_url

FieldValue = int | float | bool | str

_TAG_SPECIAL = re.compile(r"([ ,=])")
_MEASUREMENT_SPECIAL = re.compile(r"([ ,])")
#: What line protocol cannot carry in a tag: line ends, and backslashes (a trailing one breaks
#: InfluxDB 1.x's parser; elsewhere their meaning differs between versions).
_TAG_FORBIDDEN = re.compile(r"[\n\r\\]")
#: Statuses worth retrying, and only these: the server (or a proxy in front of it) is
#: struggling or asks us to slow down (429), not the data wrong. 501/505 (the request itself
#: is not supported) and every 4xx but 429 are final. Connection failures are retried too.
RETRYABLE_STATUSES = frozenset({429, 500, 502, 503, 504, 507})
#: A Retry-After longer than this is not honoured in full (a bad proxy must not stall us).
MAX_RETRY_AFTER_S = 300.0
#: How much of InfluxDB's own error text an error message carries.
_UPSTREAM_CHARS = 300


class QueryError(StorageError):
    """A ``/query`` that failed. The message names the operation, the status and InfluxDB's
    reason; the statement itself is in :attr:`query`, for the server log only: a caller
    must not show it (it tells a client the schema), nor the message, to a client."""

    def __init__(
        self, detail: str, *, query: str, status: int | None = None, retryable: bool
    ) -> None:
        self.query = query
        super().__init__(detail, status=status, retryable=retryable)


def _upstream(text: str) -> str:
    """InfluxDB's (or a proxy's) error text as one line, bounded, URL credentials removed."""
    one_line = " ".join(text.split())
    if len(one_line) > _UPSTREAM_CHARS:
        one_line = one_line[:_UPSTREAM_CHARS] + "..."
    return redact_url(one_line)


def _unreachable(exc: httpx.TransportError) -> StorageError:
    # The class name says what failed (ConnectError, ReadTimeout); httpx's text can carry the
    # request URL, and with it credentials, so it is cleaned.
    return StorageError(
        f"InfluxDB unreachable: {type(exc).__name__}: {_upstream(str(exc))}", retryable=True
    )


def retry_after_s(value: str | None, *, now: datetime | None = None) -> float | None:
    """Seconds asked for by a ``Retry-After`` header (delta-seconds or an HTTP date), capped at
    :data:`MAX_RETRY_AFTER_S`; None if absent or unreadable."""
    if not value:
        return None
    value = value.strip()
    if value.isdigit():
        return min(float(value), MAX_RETRY_AFTER_S)
    try:
        when = parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    delta = (when - (now or datetime.now(UTC))).total_seconds()
    return min(max(delta, 0.0), MAX_RETRY_AFTER_S)


class LineProtocolError(PantauError):
    """A value that line protocol cannot represent exactly."""


def escape_tag(value: str) -> str:
    """Escape a tag key or value; refuse what cannot round-trip."""
    if not value:
        raise LineProtocolError("empty tag values are dropped by InfluxDB")
    if _TAG_FORBIDDEN.search(value):
        raise LineProtocolError(f"tag value {value!r} contains a line end or backslash")
    return _TAG_SPECIAL.sub(r"\\\1", value)


def escape_measurement(name: str) -> str:
    """Escape a measurement name."""
    if not name or _TAG_FORBIDDEN.search(name):
        raise LineProtocolError(f"measurement name {name!r} cannot be written")
    return _MEASUREMENT_SPECIAL.sub(r"\\\1", name)


def format_field(value: FieldValue) -> str:
    """A field value in line protocol: integers get ``i``, strings are quoted."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        return f"{value}i"
    if isinstance(value, float):
        if not math.isfinite(value):
            raise LineProtocolError(f"{value} cannot be stored")
        return repr(value)
    return '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'


def series_key(measurement: str, tags: Mapping[str, str]) -> str:
    """``measurement,tag=value,...`` with tags sorted (InfluxDB's preferred order). Build it
    once per series and reuse it for every point of that series."""
    parts = [escape_measurement(measurement)]
    parts += [f"{escape_tag(k)}={escape_tag(v)}" for k, v in sorted(tags.items())]
    return ",".join(parts)


def format_line(key: str, fields: Mapping[str, FieldValue], ts_ms: int) -> str:
    """One point: a series key from :func:`series_key`, fields (None values skipped), time."""
    body = ",".join(f"{escape_tag(k)}={format_field(v)}" for k, v in fields.items())
    if not body:
        raise LineProtocolError(f"{key}: a point needs at least one field")
    return f"{key} {body} {ts_ms}"


def format_int_rows(
    keys: Sequence[str],
    names: Sequence[str],
    rows: Iterable[Sequence[int]],
    ts_ms: Iterable[int],
) -> list[str]:
    """Many points whose fields are all integers, column-wise: ``keys[i]`` (from
    :func:`series_key`), fields ``names`` with ``rows[i]``, time ``ts_ms[i]``. Same output as
    :func:`format_line` per point; the field names are escaped once instead of per point."""
    if not names:
        raise LineProtocolError("a point needs at least one field")
    # Braces are doubled so a field name cannot inject a str.format placeholder.
    template = ",".join(escape_tag(n).replace("{", "{{").replace("}", "}}") + "={}i" for n in names)
    return [
        f"{key} {template.format(*row)} {ts}"
        for key, row, ts in zip(keys, rows, ts_ms, strict=True)
    ]


def format_rows_at(
    keys: Sequence[str],
    names: Sequence[str],
    rows: Iterable[Sequence[int]],
    float_name: str,
    floats: Iterable[float],
    ts: int,
) -> list[str]:
    """Many points at one time ``ts``, column-wise: ``keys[i]``, the integer fields ``names``
    with ``rows[i]``, then the float field ``float_name`` with ``floats[i]``, left out where it
    is NaN (undefined). Same output as :func:`format_line` per point."""
    if not names:
        raise LineProtocolError("a point needs at least one field")
    template = ",".join(escape_tag(n).replace("{", "{{").replace("}", "}}") + "={}i" for n in names)
    with_float = f",{escape_tag(float_name)}="
    out = []
    for key, row, value in zip(keys, rows, floats, strict=True):
        body = template.format(*row)
        if value == value:  # noqa: PLR0124 -- NaN is the one float unequal to itself
            if not math.isfinite(value):
                raise LineProtocolError(f"{value} cannot be stored")
            body += with_float + repr(value)
        out.append(f"{key} {body} {ts}")
    return out


def literal(value: str) -> str:
    """An InfluxQL single-quoted string literal."""
    return "'" + value.replace("\\", "\\\\").replace("'", "\\'") + "'"


def ident(name: str) -> str:
    """An InfluxQL double-quoted identifier."""
    return '"' + name.replace("\\", "\\\\").replace('"', '\\"') + '"'


def where_clause(conditions: Mapping[str, str | Sequence[str] | None]) -> str:
    """``WHERE`` matching every condition (a sequence means any of its values); ``None`` values
    are ignored. Empty string when nothing is asked."""
    parts: list[str] = []
    for tag, wanted in conditions.items():
        if wanted is None:
            continue
        values = [wanted] if isinstance(wanted, str) else list(wanted)
        if not values:
            # Nothing can match an empty choice; InfluxQL has no FALSE literal.
            parts.append(f"{ident(tag)} = '' AND {ident(tag)} != ''")
            continue
        alts = " OR ".join(f"{ident(tag)} = {literal(v)}" for v in values)
        parts.append(f"({alts})" if len(values) > 1 else alts)
    return f" WHERE {' AND '.join(parts)}" if parts else ""


def latest_query(
    measurement: str,
    *,
    group_by: Sequence[str],
    conditions: Mapping[str, str | Sequence[str] | None] | None = None,
    limit: int = 1,
) -> str:
    """InfluxQL selecting the newest ``limit`` points of every group, with all fields and
    tags. Identifiers and string values are quoted, never pasted in raw."""
    groups = ", ".join(ident(g) for g in group_by)
    # Every value is quoted by literal()/ident() above; InfluxQL has no bind parameters in 1.x
    # GET /query that our client exposes.
    where = where_clause(conditions or {})
    select = f"SELECT * FROM {ident(measurement)}{where} "  # noqa: S608
    return select + f"GROUP BY {groups} ORDER BY time DESC LIMIT {int(limit)}"


@dataclass(frozen=True, slots=True)
class Series:
    """One series of a query result."""

    name: str
    tags: dict[str, str]
    columns: list[str]
    values: list[list[Any]]

    def rows(self) -> list[dict[str, Any]]:
        """Each value row as a dict, with the series' tags merged in."""
        return [{**self.tags, **dict(zip(self.columns, row, strict=True))} for row in self.values]


@dataclass(kw_only=True)
class InfluxHTTP:
    """A small client for the InfluxDB 1.x HTTP API. Build it freely; it connects on ``start``.

    ``token`` is sent as ``Authorization: Token ...`` (InfluxDB 2.x/3.x compatibility API);
    ``username``/``password`` as 1.x credentials. Secrets are kept out of ``repr`` and out of
    every error message."""

    url: str
    database: str = "pantau"
    username: str | None = None
    password: SecretStr | str | None = field(default=None, repr=False)
    token: SecretStr | str | None = field(default=None, repr=False)
    timeout: float = 10.0
    transport: httpx.BaseTransport | None = None
    _client: httpx.Client | None = field(default=None, init=False, repr=False)

    def start(self) -> Self:
        token, password = _plain(self.token), _plain(self.password)
        username = self.username
        base_url, url_user, url_password = _split_credentials(self.url)
        if username is None and url_user is not None:
            username, password = url_user, url_password
        headers = {"Authorization": f"Token {token}"} if token else {}
        auth = (username, password or "") if username else None
        self._client = httpx.Client(
            base_url=base_url,
            timeout=self.timeout,
            headers=headers,
            auth=auth,
            transport=self.transport,
        )
        return self

    def close(self) -> None:
        if self._client is not None:
            self._client.close()
            self._client = None

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(
        self, et: type[BaseException] | None, ev: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()

    @property
    def client(self) -> httpx.Client:
        if self._client is None:
            raise PantauError("InfluxHTTP used before start()")
        return self._client

    def ping(self) -> bool:
        """True if the server answers ``/ping``."""
        try:
            return self.client.get("/ping").status_code == 204
        except httpx.HTTPError:
            return False

    def ensure_database(self) -> None:
        """Create the database if missing (idempotent in InfluxQL)."""
        self._post_query(f'CREATE DATABASE "{self.database}"')

    def write(self, lines: Iterable[str] | bytes, *, precision: str = "ms") -> None:
        """Write points; returns only once InfluxDB has stored them.

        Raises :class:`StorageError` with ``retryable`` telling whether a retry can succeed:
        connection failures and :data:`RETRYABLE_STATUSES` can (with ``retry_after_s`` when
        the server said how long to wait); 400 (bad or conflicting data) and the rest cannot."""
        body = lines if isinstance(lines, bytes) else "\n".join(lines).encode("utf-8")
        self._write(body, {"db": self.database, "precision": precision})

    def write_to_policy(self, lines: Iterable[str], *, rp: str) -> None:
        """As :meth:`write` (ms precision), into retention policy ``rp`` instead of the
        default one: for bookkeeping that must outlive the data's retention (a version
        marker, cloud/ingest/migrations)."""
        body = "\n".join(lines).encode("utf-8")
        self._write(body, {"db": self.database, "precision": "ms", "rp": rp})

    def _write(self, body: bytes, params: dict[str, str]) -> None:
        try:
            resp = self.client.post("/write", params=params, content=body)
        except httpx.TransportError as exc:
            raise _unreachable(exc) from exc
        if resp.status_code == 204:
            return
        raise StorageError(
            f"InfluxDB /write {resp.status_code}: {_upstream(resp.text)}",
            status=resp.status_code,
            retryable=resp.status_code in RETRYABLE_STATUSES,
            retry_after_s=retry_after_s(resp.headers.get("retry-after")),
        )

    def query(self, q: str, *, epoch: str = "ms") -> list[Series]:
        """Run InfluxQL; return the series of the first statement (times as epoch ``ms``)."""
        try:
            resp = self.client.get("/query", params={"db": self.database, "q": q, "epoch": epoch})
        except httpx.TransportError as exc:
            raise _unreachable(exc) from exc
        return _series_of(resp, q)

    def _post_query(self, q: str) -> list[Series]:
        try:
            resp = self.client.post("/query", params={"db": self.database}, data={"q": q})
        except httpx.TransportError as exc:
            raise _unreachable(exc) from exc
        return _series_of(resp, q)

    def execute(self, statements: Sequence[str]) -> None:
        """Run management statements (CREATE RETENTION POLICY, CONTINUOUS QUERY...) via POST."""
        for q in statements:
            self._post_query(q)


def _split_credentials(url: str) -> tuple[str, str | None, str | None]:
    """``url`` without ``user:pass@``, and the user and password it held. httpx logs every
    request's URL at INFO, so credentials must travel as auth, never in the URL."""
    parts = urlsplit(url)
    if parts.username is None and parts.password is None:
        return url, None, None
    bare = urlunsplit(parts._replace(netloc=parts.netloc.rpartition("@")[2]))
    return bare, unquote(parts.username or ""), unquote(parts.password or "")


def _plain(secret: SecretStr | str | None) -> str | None:
    return secret.get_secret_value() if isinstance(secret, SecretStr) else secret


def _series_of(resp: httpx.Response, q: str) -> list[Series]:
    if resp.status_code != 200:
        raise QueryError(
            f"InfluxDB /query {resp.status_code}: {_upstream(resp.text)}",
            query=q,
            status=resp.status_code,
            retryable=resp.status_code in RETRYABLE_STATUSES,
        )
    try:
        results = resp.json().get("results", [{}])
    except (ValueError, AttributeError):
        # A proxy's HTML page with a 200: the store is not really there.
        raise QueryError(
            "InfluxDB /query 200 with a body that is not InfluxDB's JSON", query=q, retryable=True
        ) from None
    first = results[0] if results else {}
    if "error" in first:
        raise QueryError(
            f"InfluxQL error: {_upstream(str(first['error']))}", query=q, retryable=False
        )
    return [
        Series(
            name=s.get("name", ""),
            tags=s.get("tags", {}) or {},
            columns=s["columns"],
            values=s.get("values", []),
        )
        for s in first.get("series", [])
    ]
