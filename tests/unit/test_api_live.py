"""The live hub's ring buffer, resume ids and fan-out, without a broker: events come in through
``handle``/``publish`` exactly as the MQTT task would hand them over."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import orjson

from city import Registry
from cloud.api.live import LiveHub

RETRY = b"retry: 3000\n\n"


def hub(city: Registry, *, buffer_size: int = 16) -> LiveHub:
    return LiveHub(registry=city, mqtt_url="mqtt://127.0.0.1:1", buffer_size=buffer_size)


def change(h: LiveHub, n: int) -> bytes:
    return h.publish("change", {"n": n}).frame


async def take(frames: AsyncIterator[bytes], k: int) -> list[bytes]:
    return [await anext(frames) for _ in range(k)]


def test_a_client_resuming_inside_the_ring_gets_exactly_the_events_after_its_id(
    city: Registry,
) -> None:
    async def main() -> list[bytes]:
        h = hub(city)
        frames = [change(h, n) for n in range(1, 6)]
        got = await take(h.frames(f"{h.epoch}-2"), 4)
        return [*frames[2:], *got]

    out = asyncio.run(main())
    assert out[3:] == [RETRY, *out[:3]]
    assert [orjson.loads(f.split(b"data: ")[1])["n"] for f in out[4:]] == [3, 4, 5]


def test_ids_that_left_the_ring_come_from_elsewhere_or_are_garbage_get_one_reset(
    city: Registry,
) -> None:
    async def main() -> list[list[bytes]]:
        h = hub(city, buffer_size=16)
        for n in range(1, 41):  # events 1..24 have left the 16-event ring
            change(h, n)
        ids = [f"{h.epoch}-23", f"{h.epoch - 1}-40", f"{h.epoch}-41", "garbage", "-"]
        return [await take(h.frames(i), 2) for i in ids]

    for got in asyncio.run(main()):
        assert got[0] == RETRY
        assert got[1].startswith(b"event: reset\n")
    # The oldest id still in the ring resumes without a reset: events 25..40 are replayed.
    h = hub(city, buffer_size=16)

    async def edge() -> list[bytes]:
        for n in range(1, 41):
            change(h, n)
        return await take(h.frames(f"{h.epoch}-24"), 17)

    got = asyncio.run(edge())
    assert [orjson.loads(f.split(b"data: ")[1])["n"] for f in got[1:]] == list(range(25, 41))


def test_one_event_wakes_a_thousand_clients_with_the_same_bytes(city: Registry) -> None:
    async def main() -> tuple[int, set[bytes], int]:
        h = hub(city)
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
        assert got == {frame}
        return clients, got, h.clients

    clients, got, after = asyncio.run(main())
    assert (clients, len(got), after) == (1000, 1, 0)


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

    first, nxt = asyncio.run(main())
    assert first.startswith(b"event: reset\n")
    assert orjson.loads(nxt.split(b"data: ")[1]) == {"n": 21}


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
    h = hub(city)
    crowd = next(s for s in city if s.kind.value == "crowd")
    batch = {
        "v": 1,
        "gw": crowd.gateway,
        "seq": 1,
        "sent": 5,
        "readings": [
            {"sensor": crowd.id, "kind": "crowd", "ts": 1_700_000_000_000, "seq": 1, "values": {}},
            {
                "sensor": "not-in-registry",
                "kind": "bed",
                "ts": 1_800_000_000_000,
                "seq": 1,
                "values": {},
            },
        ],
    }
    site = city.sites[crowd.site]
    topic = f"pantau/v1/{site.id}/{crowd.gateway}/readings"
    event = h.handle(topic, orjson.dumps(batch))
    assert event is not None
    data = orjson.loads(event.frame.split(b"data: ")[1])
    assert data == {
        "site": site.id,
        "site_kind": site.kind.value,
        "kecamatan": city.kecamatan_of_kelurahan[site.kelurahan].code,
        "kinds": ["crowd"],
        "observed_ms": 1_700_000_000_000,
    }
    skipped = [
        h.handle(f"pantau/v1/nowhere/{crowd.gateway}/readings", orjson.dumps(batch)),
        h.handle(topic, b"\xff not json"),
        h.handle(topic, b"[1, 2]"),
        h.handle(topic, orjson.dumps({"readings": "x"})),
        h.handle(f"pantau/v1/{site.id}/{crowd.gateway}/status", orjson.dumps(batch)),
        h.handle("pantau-internal/v1/ingest/g/state", b"PSD1"),
    ]
    only_foreign = {**batch, "readings": batch["readings"][1:]}
    skipped.append(h.handle(topic, orjson.dumps(only_foreign)))
    assert skipped == [None] * 7
    assert event.seq == 1
