"""The ingest loop: MQTT messages in, batches stored, and only then acknowledged.

Why it is built this way (DESIGN.md, DEVICES.md "What follows for the service"):

* **Persistent session.** A fixed client id, MQTT 5 ``clean_start=False`` and a session
  expiry make the broker queue events while the service is down and hand them over when it
  comes back.
* **Store first, acknowledge after.** aiomqtt 2.x lets paho send PUBACK as soon as a QoS 1
  message arrives, before our code has stored it: a crash in between would lose the event.
  We switch the paho client underneath into manual-ack mode and send PUBACK for a batch only
  after ``store_batch`` (one database transaction) has returned. A crash, a failed store or a
  lost connection leaves the messages unacknowledged, so the broker redelivers them, and the
  event ids make the redelivery a no-op in the database.
* **Batches.** One transaction per batch, not per message, is what makes SQLite keep up.
  A batch closes at ``ingest_batch_size`` messages or ``ingest_batch_wait_ms`` after its
  first message, whichever comes first.
* **Receive Maximum.** Unacknowledged messages count against the broker's in-flight window
  for this client; it must hold at least a couple of batches or batching stalls.
* **Never stop on bad input, never drop a batch.** Bad payloads become dead letters; a
  failing database is retried with backoff until it comes back (or we are told to stop, in
  which case nothing is acknowledged and the broker keeps the messages).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
import ssl
import time
from collections.abc import Awaitable, Callable, Sequence
from datetime import timedelta
from typing import Any, Final, cast
from urllib.parse import unquote

import aiomqtt
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties
from paho.mqtt.subscribeoptions import SubscribeOptions

from bot.clock import Clock
from bot.ratings import BatchResult, Received
from bot.settings import Settings
from devices.contract import InboundMessage, PayloadError
from devices.routing import TopicRouter, subscription_for

__all__ = ["MqttIngest", "SESSION_EXPIRY_SECONDS", "KEEPALIVE_SECONDS", "receive_maximum"]

log = logging.getLogger(__name__)

SESSION_EXPIRY_SECONDS: Final = 7 * 24 * 3600
"""How long the broker keeps our session (and queues events) while the service is down."""
KEEPALIVE_SECONDS: Final = 30
MIN_RECEIVE_MAXIMUM: Final = 1000
MAX_RECEIVE_MAXIMUM: Final = 65535  # a two-byte property in MQTT 5

StoreBatch = Callable[[list[Received]], Awaitable[BatchResult]]


def receive_maximum(batch_size: int) -> int:
    """In-flight window for unacknowledged QoS 1 messages: two batches, at least 1000."""
    return max(1, min(MAX_RECEIVE_MAXIMUM, max(MIN_RECEIVE_MAXIMUM, 2 * batch_size)))


class _Backoff:
    """Exponential steps 0.5 s, 1 s, 2 s … 30 s; each delay is random in the upper half of its
    step, so instances that lost the broker together do not come back in lockstep."""

    def __init__(self, initial: float, maximum: float) -> None:
        self.initial = initial
        self.maximum = maximum
        self._next = initial

    def reset(self) -> None:
        self._next = self.initial

    def delay(self) -> float:
        current = self._next
        self._next = min(self.maximum, current * 2)
        return random.uniform(current / 2, current)


class _BatchQueue(asyncio.Queue[aiomqtt.Message]):
    """aiomqtt's incoming queue that can wake its reader once ``n`` messages wait.

    aiomqtt puts every message with ``put_nowait`` from paho's read callback; waking the
    collector per message would cost a task and a loop turn each, more than parsing it.
    """

    def __init__(self, maxsize: int = 0) -> None:
        super().__init__(maxsize)
        self._want = 0
        self._ready: asyncio.Future[None] | None = None

    def put_nowait(self, item: aiomqtt.Message) -> None:
        super().put_nowait(item)
        ready = self._ready
        if ready is not None and not ready.done() and self.qsize() >= self._want:
            ready.set_result(None)

    def ready(self, n: int) -> asyncio.Future[None]:
        """A future done once at least ``n`` messages are queued (replaces the previous one)."""
        future: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        if self.qsize() >= n:
            future.set_result(None)
        self._want, self._ready = n, future
        return future


class MqttIngest:
    """Subscribes, batches, stores through ``store_batch`` and acknowledges after storing.

    ``router_provider`` is called for every batch, so an org reload (a new router object)
    takes effect without a restart; new topic filters are subscribed on the fly. Counters
    are cumulative over the object's life: ``messages`` (acknowledged), ``stored`` (new
    rating, presence and status rows), ``duplicates`` (ratings already stored),
    ``dead_letters``, ``batches``, ``store_failures``; ``connected`` is set while subscribed.
    """

    def __init__(
        self,
        settings: Settings,
        router_provider: Callable[[], TopicRouter],
        store_batch: StoreBatch,
        clock: Clock,
        *,
        reconnect_initial: float = 0.5,
        reconnect_max: float = 30.0,
        store_retry_initial: float = 0.5,
        store_retry_max: float = 30.0,
        progress_interval: float = 30.0,
    ) -> None:
        self._settings = settings
        self._router_provider = router_provider
        self._store_batch = store_batch
        self._clock = clock
        self._batch_size = settings.ingest_batch_size
        self._batch_wait = settings.ingest_batch_wait_ms / 1000
        self._max_future = timedelta(seconds=settings.max_future_seconds)
        self._reconnect = _Backoff(reconnect_initial, reconnect_max)
        self._store_retry_initial = store_retry_initial
        self._store_retry_max = store_retry_max
        self._progress_interval = progress_interval
        self._router: TopicRouter | None = None
        self._filters: set[str] = set()
        self._stop_wait: asyncio.Future[Any] | None = None
        self._session_present = False
        self._had_session = False

        self.connected = asyncio.Event()
        self.messages = 0
        self.stored = 0
        self.duplicates = 0
        self.dead_letters = 0
        self.batches = 0
        self.store_failures = 0
        self._run_start = (time.monotonic(), 0, 0)  # (when, messages, stored) as run() began
        self._last_progress = self._run_start  # the same as of the last progress line

    # ------------------------------------------------------------------ public

    async def run(self, stop: asyncio.Event) -> None:
        """Run until ``stop`` is set; reconnects on broker trouble, never exits on bad input."""
        target = self._settings.mqtt
        stop_wait: asyncio.Future[Any] = asyncio.ensure_future(stop.wait())
        self._stop_wait = stop_wait
        self._run_start = self._last_progress = (time.monotonic(), self.messages, self.stored)
        try:
            while not stop.is_set():
                try:
                    await self._session(stop)
                    continue
                except aiomqtt.MqttError as exc:
                    self.connected.clear()
                    if stop.is_set():
                        break
                    delay = self._reconnect.delay()
                    log.warning(
                        "MQTT broker %s:%d: %s; reconnecting in %.1f s", target.host, target.port, exc, delay
                    )
                except Exception:  # a bug or a broken org reload must not end ingestion for good
                    self.connected.clear()
                    if stop.is_set():
                        raise
                    delay = self._reconnect.delay()
                    log.exception("MQTT ingest session failed; starting a new one in %.1f s", delay)
                await self._sleep_unless(stop, delay)
        finally:
            self.connected.clear()
            stop_wait.cancel()
            self._stop_wait = None
            self._log_progress(final=True)

    # ------------------------------------------------------------------ session

    def _client(self) -> aiomqtt.Client:
        settings = self._settings
        target = settings.mqtt
        properties = Properties(PacketTypes.CONNECT)  # type: ignore[no-untyped-call]
        properties.SessionExpiryInterval = SESSION_EXPIRY_SECONDS
        properties.ReceiveMaximum = receive_maximum(self._batch_size)
        client = aiomqtt.Client(
            target.host,
            target.port,
            username=unquote(target.username) if target.username is not None else None,
            password=unquote(target.password) if target.password is not None else None,
            identifier=settings.mqtt_client_id,
            protocol=aiomqtt.ProtocolVersion.V5,
            clean_start=False,
            keepalive=KEEPALIVE_SECONDS,
            properties=properties,
            tls_context=ssl.create_default_context() if target.tls else None,
            queue_type=_BatchQueue,
        )
        paho = client._client  # noqa: SLF001
        # paho only sends PUBACK for a QoS 1 message when we call ack(); aiomqtt creates the
        # paho client in __init__ and connects in __aenter__, so this is in time.
        paho.manual_ack_set(True)
        on_connect = cast(Callable[..., None], paho.on_connect)

        def remember_session(c: Any, userdata: Any, flags: Any, reason: Any, properties: Any = None) -> None:
            self._session_present = bool(getattr(flags, "session_present", False))
            on_connect(c, userdata, flags, reason, properties)

        paho.on_connect = remember_session  # aiomqtt ignores CONNACK's session-present flag
        return client

    async def _session(self, stop: asyncio.Event) -> None:
        """One connection: subscribe, then batch → store → ack until stop or disconnect."""
        target = self._settings.mqtt
        client = self._client()
        self._session_present = False
        async with client:
            try:
                self._router = self._router_provider()
                self._filters = set()
                await self._subscribe(client, self._router.subscriptions())
                self._reconnect.reset()
                self.connected.set()
                log.info(
                    "MQTT connected to %s:%d as %r (%s); %d topic filters, receive maximum %d",
                    target.host, target.port, self._settings.mqtt_client_id,
                    "session resumed" if self._session_present else "new session",
                    len(self._filters), receive_maximum(self._batch_size),
                )
                if not self._session_present and self._had_session:
                    log.warning(
                        "the broker no longer had our session (restarted without persistence, or it "
                        "expired): events published while we were away are lost"
                    )
                self._had_session = True
                while True:
                    batch = await self._collect(client, stop)
                    if batch:
                        await self._handle(client, batch, stop)
                    if stop.is_set():
                        log.info("MQTT ingest stopping: disconnecting from %s:%d", target.host, target.port)
                        return
                    _raise_if_disconnected(client)
                    await self._follow_router(client)
            finally:
                self.connected.clear()
                lost = client._disconnected  # noqa: SLF001
                if lost.done() and not lost.cancelled():
                    lost.exception()  # retrieved, so asyncio does not log it as forgotten

    async def _subscribe(self, client: aiomqtt.Client, filters: Sequence[str]) -> None:
        group = self._settings.mqtt_shared_group
        wanted = [f for f in filters if f not in self._filters]
        if not wanted:
            return
        # Retained messages only for a new subscription: a reconnect of the persistent
        # session must not replay every device's retained status as if it were fresh.
        options = SubscribeOptions(qos=1, retainHandling=SubscribeOptions.RETAIN_SEND_IF_NEW_SUB)
        topics = [(subscription_for(f, group), options) for f in wanted]
        granted = await client.subscribe(topics)
        for (topic, _), code in zip(topics, granted, strict=False):
            value = getattr(code, "value", code)
            if isinstance(value, int) and value >= 0x80:
                log.error("MQTT broker refused the subscription to %r: %s", topic, code)
            elif value == 0:
                log.warning("MQTT broker granted only QoS 0 for %r: events may be lost while down", topic)
        self._filters.update(wanted)

    async def _follow_router(self, client: aiomqtt.Client) -> None:
        """Subscribe to what a reloaded org added, unsubscribe what it removed."""
        router = self._router_provider()
        if router is self._router:
            return
        self._router = router
        current = router.subscriptions()
        removed = self._filters - set(current)
        await self._subscribe(client, current)
        if removed:
            group = self._settings.mqtt_shared_group
            await client.unsubscribe([subscription_for(f, group) for f in sorted(removed)])
            self._filters -= removed
        log.info("MQTT topic filters follow the reloaded org: %d filters", len(self._filters))

    # ------------------------------------------------------------------ batching

    async def _collect(self, client: aiomqtt.Client, stop: asyncio.Event) -> list[tuple[aiomqtt.Message, Received]]:
        """Up to ``batch_size`` messages, or what arrived within ``batch_wait`` of the first.

        Reads aiomqtt's queue directly: its ``messages`` iterator costs a task per message,
        and :class:`_BatchQueue` wakes us once per batch instead of once per message.
        """
        queue = cast(_BatchQueue, client._queue)  # noqa: SLF001
        disconnected = client._disconnected  # noqa: SLF001
        batch: list[tuple[aiomqtt.Message, Received]] = []
        if stop.is_set():
            return batch
        if queue.empty():
            await self._wait(queue.ready(1), disconnected, None)
        router = self._router_provider()
        parse = self._parse
        size = self._batch_size
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self._batch_wait
        while True:
            while len(batch) < size:
                try:
                    message = queue.get_nowait()
                except asyncio.QueueEmpty:
                    break
                batch.append((message, parse(router, message)))
            if not batch or len(batch) >= size or stop.is_set() or disconnected.done():
                return batch
            remaining = deadline - loop.time()
            if remaining <= 0:
                return batch
            await self._wait(queue.ready(size - len(batch)), disconnected, remaining)

    async def _wait(self, ready: asyncio.Future[None], disconnected: asyncio.Future[None], timeout: float | None) -> None:
        """Until ``ready``, a stop, a lost connection or ``timeout``, whichever comes first."""
        assert self._stop_wait is not None
        try:
            waiting: set[asyncio.Future[Any]] = {ready, self._stop_wait, disconnected}
            await asyncio.wait(waiting, timeout=timeout, return_when=asyncio.FIRST_COMPLETED)
        finally:
            ready.cancel()

    def _parse(self, router: TopicRouter, message: aiomqtt.Message) -> Received:
        inbound = InboundMessage(message.topic.value, message.payload, message.retain, self._clock.now())
        try:
            return Received(inbound, router.parse(inbound, self._max_future))
        except PayloadError as exc:
            return Received(inbound, error=exc)
        except Exception as exc:  # an adapter bug must not stop the loop: keep the evidence
            log.exception("adapter failed on %r; kept as a dead letter", inbound.topic[:200])
            return Received(inbound, error=PayloadError("bad_field", f"adapter error: {exc!r}"[:2000]))

    # ------------------------------------------------------------------ store and ack

    async def _handle(
        self, client: aiomqtt.Client, batch: list[tuple[aiomqtt.Message, Received]], stop: asyncio.Event
    ) -> None:
        """Store the batch (retrying until it works or we stop), then acknowledge it."""
        received = [item for _, item in batch]
        backoff = _Backoff(self._store_retry_initial, self._store_retry_max)
        failures = 0
        while True:
            try:
                result = await self._store_batch(received)
                break
            except Exception as exc:  # database down, disk full, a bug: retry, never drop
                self.store_failures += 1
                failures += 1
                if stop.is_set():
                    log.warning(
                        "stopping with a batch of %d messages not stored (%s): not acknowledged, "
                        "the broker will deliver them again", len(batch), exc,
                    )
                    return
                delay = backoff.delay()
                if failures == 1:  # the traceback once per batch, then one line per retry
                    log.exception("storing a batch of %d messages failed; retrying in %.1f s", len(batch), delay)
                else:
                    log.warning(
                        "storing a batch of %d messages failed again (%s: %s); retrying in %.1f s",
                        len(batch), type(exc).__name__, exc, delay,
                    )
                await self._sleep_unless(stop, delay)
        self._count(result, len(batch))
        if client._disconnected.done():  # noqa: SLF001
            # The message ids belonged to the lost connection; the broker redelivers these
            # messages on the next one and the event ids make that a no-op.
            log.info("connection lost while storing: %d stored messages will come again", len(batch))
            return
        paho = client._client  # noqa: SLF001
        for message, _ in batch:
            if message.qos:
                paho.ack(message.mid, message.qos)

    def _count(self, result: BatchResult, messages: int) -> None:
        self.batches += 1
        self.messages += messages
        self.stored += result.ratings + result.presence + result.statuses + result.nps + result.complaints
        self.duplicates += result.duplicates
        self.dead_letters += result.dead_letters
        if time.monotonic() - self._last_progress[0] >= self._progress_interval:
            self._log_progress()

    def _log_progress(self, final: bool = False) -> None:
        now = time.monotonic()
        since, messages, stored = self._run_start if final else self._last_progress
        elapsed = max(now - since, 1e-9)
        if self.messages == messages and not final:
            return
        log.info(
            "ingest%s: %d messages (%.0f/s), %d stored (%.0f/s), %d duplicates, %d dead letters, "
            "%d batches, %d store failures",
            " total" if final else "",
            self.messages, (self.messages - messages) / elapsed,
            self.stored, (self.stored - stored) / elapsed,
            self.duplicates, self.dead_letters, self.batches, self.store_failures,
        )
        self._last_progress = (now, self.messages, self.stored)

    @staticmethod
    async def _sleep_unless(stop: asyncio.Event, seconds: float) -> None:
        """Real-time backoff that a stop cuts short (the broker and database recover in real time)."""
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(stop.wait(), seconds)


def _raise_if_disconnected(client: aiomqtt.Client) -> None:
    """aiomqtt records a lost connection in a future; turn it into MqttError for the reconnect."""
    disconnected = client._disconnected  # noqa: SLF001
    if not disconnected.done():
        return
    exc = disconnected.exception() if not disconnected.cancelled() else None
    if isinstance(exc, aiomqtt.MqttError):
        raise exc
    raise aiomqtt.MqttError(f"connection lost: {exc!r}" if exc else "connection closed by the broker")
