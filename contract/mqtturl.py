"""The one MQTT broker URL of every deployable: ``mqtt://host[:port]`` or ``mqtts://host[:port]``.

Every part that talks to the broker (the edge agent, the ingester and its replay, the API's
state follower and live stream, the simulator's direct devices, ``pantau broker``) reads its
URL through :data:`MqttUrl`, so a scheme, a default port or a refusal means the same thing
everywhere. The value is a :class:`BrokerUrl`: a ``str`` (it logs, compares and travels in an
environment variable as the text it always was) that also knows its host, port and whether it
is TLS.

Why a URL may not carry ``user:password@``: the URL is logged on every (re)connect and shown by
``pantau demo``; the password has a secret setting of its own. A refusal quotes the URL with
its credentials replaced by ``***`` (:func:`contract.secrets.redact_url`), never the password.
"""

from __future__ import annotations

from typing import Annotated, Any, Self
from urllib.parse import urlsplit

from pydantic import PlainSerializer, PlainValidator, WithJsonSchema

from contract.secrets import redact_url

__all__ = ["MQTTS_PORT", "MQTT_PORT", "BrokerUrl", "MqttUrl"]

#: The IANA ports: plain MQTT and MQTT over TLS.
MQTT_PORT = 1883
MQTTS_PORT = 8883

_SCHEMES = {"mqtt": False, "mqtts": True}


class BrokerUrl(str):
    """A checked broker URL, normalised to ``scheme://host:port``; build it with :meth:`parse`.

    ``host``, ``port`` and ``tls`` are what the client connects with; ``str(url)`` never holds
    credentials (they are refused)."""

    __slots__ = ("host", "port", "tls")
    host: str
    port: int
    tls: bool

    def __new__(cls, *, host: str, port: int, tls: bool) -> Self:
        shown = f"[{host}]" if ":" in host else host  # an IPv6 literal
        url = super().__new__(cls, f"{'mqtts' if tls else 'mqtt'}://{shown}:{port}")
        url.host, url.port, url.tls = host, port, tls
        return url

    def __reduce__(self) -> tuple[Any, ...]:
        # str's own pickling would call __new__ with the text alone.
        return (_rebuild, (self.host, self.port, self.tls))

    @classmethod
    def parse(cls, text: str) -> BrokerUrl:
        """``text`` as a broker URL; the port defaults to 1883 for ``mqtt://`` and 8883 for
        ``mqtts://``. Raises ``ValueError`` in one sentence that never quotes a password."""
        if isinstance(text, BrokerUrl):
            return text
        shown = redact_url(text)
        parts = urlsplit(text.strip())
        if parts.scheme.lower() not in _SCHEMES or not parts.hostname:
            raise ValueError(
                f"must be mqtt://host[:port] or mqtts://host[:port] (TLS), not {shown!r}"
            )
        # Any "@": a host name never holds one, and a password with "#" or "/" in it would
        # hide from urlsplit's username/password in the fragment or path.
        if "@" in text:
            raise ValueError(
                f"must not hold credentials ({shown!r}); set the username and password"
                " settings instead"
            )
        if parts.path not in ("", "/") or parts.query or parts.fragment:
            raise ValueError(f"must be only scheme://host[:port], not {shown!r}")
        tls = _SCHEMES[parts.scheme.lower()]
        try:
            port = parts.port
        except ValueError:
            raise ValueError(f"has a port that is not a number 0-65535: {shown!r}") from None
        return cls(host=parts.hostname, port=port or (MQTTS_PORT if tls else MQTT_PORT), tls=tls)


def _rebuild(host: str, port: int, tls: bool) -> BrokerUrl:
    return BrokerUrl(host=host, port=port, tls=tls)


def _validate(value: Any) -> BrokerUrl:
    if not isinstance(value, str):
        raise ValueError("must be a URL string such as mqtts://broker.example:8883")  # noqa: TRY004 - pydantic wants ValueError
    return BrokerUrl.parse(value)


#: A settings field holding a broker URL: parses text into a :class:`BrokerUrl`, serialises
#: back to the text.
MqttUrl = Annotated[
    BrokerUrl,
    PlainValidator(_validate),
    PlainSerializer(str, return_type=str),
    WithJsonSchema({"type": "string", "format": "uri", "pattern": "^mqtts?://"}),
]
