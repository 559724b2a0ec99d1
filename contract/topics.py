"""Every MQTT topic name Pantau uses, built and parsed here and nowhere else.

Layout: ``pantau/v1/{site}/{gateway}/{channel}``. The version segment lets a v2 contract run
beside v1 on one broker; the site segment lets ACLs and subscriptions cut by site.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from enum import StrEnum
from functools import lru_cache

from contract.errors import TopicError

PREFIX = "pantau"
VERSION = "v1"

#: Identifiers (sites, gateways, sensors) are ASCII so they are safe in topics, serial frames,
#: file names and InfluxDB tags without escaping; human names live in the registry.
ID_PATTERN = r"[A-Za-z0-9][A-Za-z0-9_.-]{0,63}"
_ID = re.compile(ID_PATTERN)


class Channel(StrEnum):
    """The last topic segment: what kind of message travels there."""

    READINGS = "readings"  # gateway -> cloud: a batch (JSON v1 or binary)
    READING = "reading"  # simple device -> cloud: one reading, for mosquitto_pub
    STATUS = "status"  # gateway -> cloud: retained online/offline, also the last-will
    CMD = "cmd"  # cloud -> gateway: a command
    ACK = "ack"  # gateway -> cloud: the answer to a command


@dataclass(frozen=True, slots=True)
class Topic:
    """A parsed Pantau topic."""

    site: str
    gateway: str
    channel: Channel

    def __str__(self) -> str:
        return build(self.site, self.gateway, self.channel)


def is_valid_id(value: str) -> bool:
    """True if ``value`` may be used as a site, gateway or sensor id."""
    return _ID.fullmatch(value) is not None


def build(site: str, gateway: str, channel: Channel) -> str:
    """The topic for ``channel`` of ``gateway`` at ``site``; refuses ids that would break it."""
    for label, value in (("site", site), ("gateway", gateway)):
        if not is_valid_id(value):
            raise TopicError(f"{PREFIX}/{VERSION}/{site}/{gateway}", f"invalid {label} id")
    return f"{PREFIX}/{VERSION}/{site}/{gateway}/{channel.value}"


# Every message's topic is parsed, and a city has a few topics per gateway: the parse of a good
# one is remembered (a Topic is immutable); a bad one raises and is never cached, and the
# bound keeps a device inventing topics from growing it.
@lru_cache(maxsize=16384)
def parse(topic: str) -> Topic:
    """Parse a concrete topic; raises :class:`TopicError` for anything not in the layout."""
    parts = topic.split("/")
    if len(parts) != 5 or parts[0] != PREFIX:
        raise TopicError(topic, f"expected {PREFIX}/{VERSION}/<site>/<gateway>/<channel>")
    _, version, site, gateway, channel = parts
    if version != VERSION:
        raise TopicError(topic, f"unsupported topic version {version!r}")
    if not (is_valid_id(site) and is_valid_id(gateway)):
        raise TopicError(topic, "invalid site or gateway id")
    try:
        return Topic(site, gateway, Channel(channel))
    except ValueError:
        raise TopicError(topic, f"unknown channel {channel!r}") from None


def subscription(channel: Channel, *, site: str = "+", gateway: str = "+") -> str:
    """A subscription filter for ``channel``, all sites and gateways unless narrowed."""
    return f"{PREFIX}/{VERSION}/{site}/{gateway}/{channel.value}"


def shared(group: str, topic_filter: str) -> str:
    """An MQTT v5 shared subscription: the broker spreads messages over the group's members."""
    return f"$share/{group}/{topic_filter}"


#: Root of the ingesters' own topics. Outside ``pantau/v1/...`` on purpose: no gateway can be
#: named so that its topics collide, and ``parse`` refuses these as device topics.
INTERNAL_PREFIX = "pantau-internal/v1"
_GROUP = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,63}")


#: The group name a lone ingester (no ``mqtt_shared_group``) publishes its state deltas under,
#: so the read API can follow one ingester exactly as it follows a group.
LONE_INGEST_GROUP = "lone"


def ingest_state(group: str) -> str:
    """The topic on which the members of ingester group ``group`` exchange sensor-state deltas
    (see docs/adr/0006-ingester-scale-out.md). Every member subscribes to it *non-shared*, so
    each delta reaches every other member."""
    if _GROUP.fullmatch(group) is None:
        raise TopicError(f"{INTERNAL_PREFIX}/ingest/{group}/state", "invalid ingester group name")
    return f"{INTERNAL_PREFIX}/ingest/{group}/state"


def is_internal(topic: str) -> bool:
    """True for the ingesters' own topics (never a device's)."""
    return topic.startswith(INTERNAL_PREFIX + "/")
