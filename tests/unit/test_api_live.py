"""The live hub's ring buffer, resume ids and fan-out, without a broker: events come in through
``handle``/``publish`` exactly as the MQTT task would hand them over."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

import orjson

from city import Registry
from cloud.api.live import LiveHub

RETRY = b"retry: 3000\n\n"


def hub(city: Registry, *, buffer_size: int = 16, flush_s: float = 0.0) -> LiveHub:
    return LiveHub(
        registry=city, mqtt_url="mqtt://127.0.0.1:1", buffer_size=buffer_size, flush_s=flush_s
    )


def change(h: LiveHub, n: int) -> bytes:
    return h.publish("change", {"n": n}).frame


def parse(chunks: list[bytes]) -> list[tuple[str, Any]]:
    """(event, data) of every event in the chunks a stream yielded, in order."""
    out = []
    for frame in b"".join(chunks).split(b"\n\n"):
        fields = dict(line.split(b": ", 1) for line in frame.split(b"\n") if line and b": " in line)
        if b"data" in fields:
            out.append((fields[b"event"].decode(), orjson.loads(fields[b"data"])))
    return out


async def take(frames: AsyncIterator[bytes], k: int) -> list[bytes]:
    return [await anext(frames) for _ in range(k)]


def test_a_client_resuming_inside_the_ring_gets_exactly_the_events_after_its_id(
    city: Registry,
) -> None:
    """Events 1-5 published; resuming from 2 replays 3, 4, 5 (in one chunk) after the retry
    hint."""

    async def main() -> list[bytes]:
        h = hub(city)
        for n in range(1, 6):
            change(h, n)
        return await take(h.frames(f"{h.epoch}-2"), 2)

    chunks = asyncio.run(main())
    assert chunks[0] == RETRY
    assert parse(chunks) == [("change", {"n": 3}), ("change", {"n": 4}), ("change", {"n": 5})]


def test_ids_that_left_the_ring_come_from_elsewhere_or_are_garbage_get_one_reset(
    city: Registry,
) -> None:
    """With 40 events through a 16-event ring, resuming from 23 (gone), from another epoch,
    from the future or from garbage is one ``reset``; from 24 (the last one before the ring)
    replays 25-40."""

    async def main() -> tuple[list[list[bytes]], list[bytes]]:
        h = hub(city, buffer_size=16)
        for n in range(1, 41):
            change(h, n)
        ids = [f"{h.epoch}-23", f"{h.epoch - 1}-40", f"{h.epoch}-41", "garbage", "-"]
        refused = [await take(h.frames(i), 2) for i in ids]
        return refused, await take(h.frames(f"{h.epoch}-24"), 2)

    refused, edge = asyncio.run(main())
    for got in refused:
        assert got[0] == RETRY
        assert parse(got) == [("reset", {"reason": "resume id unknown or too old"})]
    assert parse(edge) == [("change", {"n": n}) for n in range(25, 41)]


def test_one_event_wakes_a_thousand_clients_with_the_same_bytes(city: Registry) -> None:
    async def main() -> tuple[int, set[bytes], bytes, int]:
        h = hub(city, flush_s=0.01)
        streams = [h.frames() for _ in range(1000)]
        for s in streams:
            assert await anext(s) == RETRY
        waiting = [asyncio.ensure_future(anext(s)) for s in streams]
        await asyncio.sleep(0)  # let every client reach its wait
        clients = h.clients
        frame = change(h, 1)
        got = set(await asyncio.gather(*waiting))
        for s in streams:
            await s.aclose()
        return clients, got, frame, h.clients

    clients, got, frame, after = asyncio.run(main())
    assert (clients, got, after) == (1000, {frame}, 0)


def test_a_burst_reaches_a_client_in_one_chunk(city: Registry) -> None:
    """Five events within one flush interval: the client is woken once and writes them as one
    chunk, in order."""

    async def main() -> list[bytes]:
        h = hub(city, flush_s=0.05)
        stream = h.frames()
        assert await anext(stream) == RETRY
        waiting = asyncio.ensure_future(anext(stream))
        await asyncio.sleep(0)
        for n in range(1, 6):
            change(h, n)
        return [await waiting]

    chunks = asyncio.run(main())
    assert parse(chunks) == [("change", {"n": n}) for n in range(1, 6)]


def test_a_client_that_fell_behind_gets_a_reset_and_continues_from_now(city: Registry) -> None:
    async def main() -> list[bytes]:
        h = hub(city, buffer_size=16)
        stream = h.frames()
        assert await anext(stream) == RETRY
        for n in range(1, 21):  # 20 events while the client was not reading; 16 kept
            change(h, n)
        first = await anext(stream)
        waiting = asyncio.ensure_future(anext(stream))
        await asyncio.sleep(0)
        change(h, 21)
        return [first, await waiting]

    assert parse(asyncio.run(main())) == [
        ("reset", {"reason": "client fell behind"}),
        ("change", {"n": 21}),
    ]


def test_end_streams_ends_every_open_stream(city: Registry) -> None:
    async def main() -> list[list[bytes]]:
        async with hub(city) as h:
            streams = [h.frames() for _ in range(3)]
            for s in streams:
                await anext(s)
            h.end_streams()
            return [[f async for f in s] for s in streams]

    assert asyncio.run(main()) == [[], [], []]


def test_handle_names_the_site_and_skips_what_no_client_needs(city: Registry) -> None:
    """A crowd gate's batch (plus a reading of a sensor the registry does not list, which is
    ignored, newer time and all) is one event; foreign sites, garbage, other channels and
    internal topics are none."""
    h = hub(city)
    crowd = next(s for s in city if s.kind.value == "crowd")
    reading = {"kind": "crowd", "seq": 1, "values": {}}
    batch = {
        "v": 1,
        "gw": crowd.gateway,
        "seq": 1,
        "sent": 5,
        "readings": [
            {**reading, "sensor": crowd.id, "ts": 1_700_000_000_000},
            {**reading, "sensor": "not-in-registry", "ts": 1_800_000_000_000},
        ],
    }
    site = city.sites[crowd.site]
    topic = f"pantau/v1/{site.id}/{crowd.gateway}/readings"

    async def main() -> tuple[bytes | None, list[object]]:
        event = h.handle(topic, orjson.dumps(batch))
        only_foreign = {**batch, "readings": batch["readings"][1:]}
        skipped: list[object] = [
            h.handle(f"pantau/v1/nowhere/{crowd.gateway}/readings", orjson.dumps(batch)),
            h.handle(topic, b"\xff not json"),
            h.handle(topic, b"[1, 2]"),
            h.handle(topic, orjson.dumps({"readings": "x"})),
            h.handle(topic, orjson.dumps(only_foreign)),
            h.handle(f"pantau/v1/{site.id}/{crowd.gateway}/status", orjson.dumps(batch)),
            h.handle("pantau-internal/v1/ingest/g/state", b"PSD1"),
        ]
        return (None if event is None else event.frame), skipped

    frame, skipped = asyncio.run(main())
    assert frame is not None
    assert parse([frame]) == [
        (
            "change",
            {
                "site": site.id,
                "site_kind": site.kind.value,
                "kecamatan": city.kecamatan_of_kelurahan[site.kelurahan].code,
                "kinds": ["crowd"],
                "observed_ms": 1_700_000_000_000,
            },
        )
    ]
    assert skipped == [None] * 7


def test_an_idle_client_gets_a_keepalive_from_the_hubs_one_heartbeat(city: Registry) -> None:
    """No event for a heartbeat: each of 3 idle clients gets a comment line, then the next
    event; the hub runs one heartbeat timer whatever the number of clients."""

    async def main() -> list[list[bytes]]:
        h = LiveHub(registry=city, mqtt_url="mqtt://127.0.0.1:1", flush_s=0.0, heartbeat_s=0.05)
        streams = [h.frames() for _ in range(3)]
        for s in streams:
            assert await anext(s) == RETRY
        beats = [await anext(s) for s in streams]
        change(h, 1)  # before the streams resume: each then finds it in the ring
        return [[beat, await anext(s)] for beat, s in zip(beats, streams, strict=True)]

    got = asyncio.run(main())
    assert [chunks[0] for chunks in got] == [b": keepalive\n\n"] * 3
    assert [parse(chunks) for chunks in got] == [[("change", {"n": 1})]] * 3
