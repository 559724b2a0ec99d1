"""MQTT reason codes in words, for everything an operator reads: logs, status files, CLI errors.

A bare ``reason 135`` sends a technician to the MQTT 5 specification; ``Not authorized (reason
code 135)`` tells them to look at the credentials. The words are paho's own names
(:class:`paho.mqtt.reasoncodes.ReasonCode`), so they match what paho and the broker's
documentation say. The code stays in brackets because it is what a search finds.

contract/ does not import paho (the wire contract loads only pydantic and orjson); the helpers
take anything shaped like a paho ``ReasonCode``, which is what every paho callback hands over.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Protocol


class ReasonCodeLike(Protocol):
    """The part of paho's ``ReasonCode`` these helpers read."""

    @property
    def value(self) -> int: ...

    def getName(self) -> str: ...  # noqa: N802 - paho's method name


def reason_words(code: ReasonCodeLike) -> str:
    """One reason code as ``"<paho's name> (reason code <n>)"``, e.g.
    ``"Not authorized (reason code 135)"``."""
    return f"{code.getName()} (reason code {code.value})"


def reasons_words(codes: Iterable[ReasonCodeLike]) -> str:
    """Several reason codes (a SUBACK's, one per subscription) in words, ``"; "``-separated."""
    return "; ".join(reason_words(code) for code in codes)
