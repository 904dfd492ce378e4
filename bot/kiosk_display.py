"""After positive kiosk feedback, the kiosk shows the office's review page as a link and a QR code.

The ingest batch that stored a good kiosk rating hands it to :meth:`KioskDisplay.offer` after
its commit; ``offer`` only puts it on a bounded queue, so publishing never blocks nor breaks
ingest. :meth:`KioskDisplay.run` drains the queue on its own MQTT connection and publishes to
``{root}/{site}/kiosk/{device}/display``::

    {"kind": "review", "url": "https://…", "title": "Яндекс Карты",
     "qr_svg": "<svg …>", "qr_png": "<base64 PNG>", "expires": "2026-11-26T10:05:00+00:00"}

with QoS 1, retained, and the MQTT 5 Message Expiry Interval ``kiosk_display_seconds``: a
kiosk that is connected shows it at once, one that reconnects gets the retained message only
while it is fresh (the broker drops an expired retained message), and the next good rating
replaces it. The QR images are rendered in an executor, once per review URL.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import json
import logging
import ssl
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Final
from urllib.parse import unquote

import aiomqtt
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties

from bot.clock import Clock
from bot.directory import PointInfo
from bot.settings import Settings
from charts.qr import render_qr_png, render_qr_svg
from devices.contract import RatingEvent

__all__ = ["DisplayRequest", "KioskDisplay", "display_payload", "display_topic"]

log = logging.getLogger(__name__)

QUEUE_LIMIT: Final = 1000
"""Requests waiting while the broker is away; beyond this the oldest are stale anyway."""


def display_topic(root: str, site: str, device_id: str) -> str:
    return f"{root.rstrip('/')}/{site}/kiosk/{device_id}/display"


def display_payload(url: str, title: str | None, expires: datetime, qr: tuple[bytes, bytes]) -> bytes:
    """The display message; ``qr`` is ``(svg, png)`` as rendered by :mod:`charts.qr`."""
    svg, png = qr
    return json.dumps(
        {
            "kind": "review",
            "url": url,
            "title": title,
            "qr_svg": svg.decode("utf-8"),
            "qr_png": base64.b64encode(png).decode("ascii"),
            "expires": expires.isoformat(timespec="seconds"),
        },
        ensure_ascii=False,
        separators=(",", ":"),
    ).encode("utf-8")


def _render(url: str) -> tuple[bytes, bytes]:
    return render_qr_svg(url), render_qr_png(url, box_size=8)


@dataclass(frozen=True, slots=True)
class DisplayRequest:
    site: str
    device_id: str
    url: str
    title: str | None
    at: datetime  # when the rating was stored: the display expires counting from here


class KioskDisplay:
    """Fire-and-forget publisher of the kiosks' review-page screens."""

    def __init__(self, settings: Settings, clock: Clock, *, reconnect_max: float = 30.0) -> None:
        self._settings = settings
        self._clock = clock
        self._root = settings.mqtt_topic_root
        self._ttl = timedelta(seconds=settings.kiosk_display_seconds)
        self._queue: asyncio.Queue[DisplayRequest] = asyncio.Queue(QUEUE_LIMIT)
        self._qr: dict[str, tuple[bytes, bytes]] = {}
        self._reconnect_max = reconnect_max
        self.published = 0
        self.dropped = 0

    # ------------------------------------------------------------------ producer side

    def offer(self, ratings: Sequence[tuple[RatingEvent, PointInfo]]) -> None:
        """Queue the screen for each good kiosk rating whose office has a review page (no I/O)."""
        now = self._clock.now()
        for event, point in ratings:
            office = point.office
            if event.channel != "kiosk" or event.value != "good" or not office.review_url:
                continue
            request = DisplayRequest(event.site, event.device_id, office.review_url, office.review_title, now)
            try:
                self._queue.put_nowait(request)
            except asyncio.QueueFull:
                self.dropped += 1
                log.warning("kiosk display queue full: the review screen for %s is dropped", event.device_id)

    # ------------------------------------------------------------------ consumer side

    async def message(self, request: DisplayRequest) -> tuple[str, bytes] | None:
        """``(topic, payload)`` for a request, or None once it is no longer fresh."""
        expires = request.at + self._ttl
        if expires <= self._clock.now():
            return None
        qr = self._qr.get(request.url)
        if qr is None:
            qr = await asyncio.get_running_loop().run_in_executor(None, _render, request.url)
            self._qr[request.url] = qr
        return display_topic(self._root, request.site, request.device_id), display_payload(
            request.url, request.title, expires, qr
        )

    def _client(self) -> aiomqtt.Client:
        target = self._settings.mqtt
        return aiomqtt.Client(
            target.host,
            target.port,
            username=unquote(target.username) if target.username is not None else None,
            password=unquote(target.password) if target.password is not None else None,
            identifier=f"{self._settings.mqtt_client_id}-display",
            protocol=aiomqtt.ProtocolVersion.V5,
            tls_context=ssl.create_default_context() if target.tls else None,
        )

    async def _publish(self, client: aiomqtt.Client, request: DisplayRequest) -> None:
        built = await self.message(request)
        if built is None:
            self.dropped += 1
            log.info("review screen for kiosk %s expired before the broker took it", request.device_id)
            return
        topic, payload = built
        remaining = int((request.at + self._ttl - self._clock.now()).total_seconds())
        properties = Properties(PacketTypes.PUBLISH)  # type: ignore[no-untyped-call]
        properties.MessageExpiryInterval = max(1, remaining)
        await client.publish(topic, payload, qos=1, retain=True, properties=properties)
        self.published += 1

    async def run(self, stop: asyncio.Event) -> None:
        """Publish queued screens until ``stop``; reconnects on broker trouble, never raises."""
        delay = 0.5
        pending: DisplayRequest | None = None
        while not stop.is_set():
            try:
                async with self._client() as client:
                    delay = 0.5
                    while not stop.is_set():
                        if pending is None:
                            pending = await self._next(stop)
                            if pending is None:
                                return
                        await self._publish(client, pending)
                        pending = None
            except aiomqtt.MqttError as exc:
                log.warning("kiosk display: MQTT %s; reconnecting in %.1f s", exc, delay)
            except Exception:  # a bug must not end the displays for good
                log.exception("kiosk display failed; dropping one screen and going on")
                pending = None
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), delay)
            delay = min(self._reconnect_max, delay * 2)

    async def _next(self, stop: asyncio.Event) -> DisplayRequest | None:
        get = asyncio.ensure_future(self._queue.get())
        stopped = asyncio.ensure_future(stop.wait())
        try:
            await asyncio.wait({get, stopped}, return_when=asyncio.FIRST_COMPLETED)
        finally:
            stopped.cancel()
            if not get.done():
                get.cancel()
        return get.result() if get.done() and not get.cancelled() else None
