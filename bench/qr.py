"""QR survey benchmark: submissions per second the ``/r/{code}`` endpoint sustains, and latency.

    .venv/bin/python bench/qr.py                       # concurrency 16, 32, 64; 15 s each
    .venv/bin/python bench/qr.py --quick               # smoke run: 4 s per phase
    .venv/bin/python bench/qr.py --no-batching         # one store_batch transaction per submission
    .venv/bin/python bench/qr.py --database postgres://postgres@127.0.0.1:5432/test
    .venv/bin/python bench/qr.py --dry-store --profile  # HTTP and checks alone, cProfile of the loop

The real service runs in this process (``bot.app.build`` + ``App.start`` on a fresh SQLite file
in WAL mode, migrated by ``bot.db.upgrade``, ``http_port=0``, a unique MQTT root on the local
Mosquitto, Telegram off: negatives open their cases and wait in the outbox, nothing is sent).
The org: one office with 200 points and five reasons (a thousand submissions a second is a
whole company's evening rush, not ten desks'; ``--points 10`` shows a hot spot, where the
anomaly check counts ever more ratings per point). A spawned client process (so the client
does not share the service's event loop) keeps N requests in flight over keep-alive
connections on loopback: each request is one phone (its own cookie) posting the form —
90 % good, 7 % bad with two reasons and a comment, 3 % so-so — to a random point's code.
All of them come from 127.0.0.1, so ``SURVEY_IP_PER_MINUTE`` is raised for the run (many
phones behind one address); the per-phone limit and the repeat detector work as in production.

Each phase runs ``--duration`` seconds after a second of warm-up; latency is from the request
being sent to its response read (the response comes after the rating's transaction has
committed). After each phase the stored QR ratings are counted: every 200 must be a row.
Target: ≥ 1,000 submissions/s with p99 ≤ 50 ms on 2 cores. The CPU line splits the service,
the client and the rest of the machine (other jobs: look at it first). Prints a markdown
table and always exits 0: it is a measurement.
"""

from __future__ import annotations

import argparse
import asyncio
import cProfile
import io
import logging
import multiprocessing as mp
import os
import pstats
import random
import shutil
import sys
import tempfile
import time
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from bench.ingest import machine_busy_seconds, percentile, self_cpu_seconds  # noqa: E402

TARGET_RATE = 1000.0
TARGET_P99_MS = 50.0


def make_org(points: int) -> dict[str, Any]:
    return {
        "company": "Bench",
        "offices": [{
            "code": "QRB", "name": "Бенчмарк, Тестовая 1", "timezone": "Europe/Moscow",
            "working_hours": {"mon-sun": "00:00-23:59"}, "staff_chat": -1009000000001,
            "review_url": "https://yandex.ru/maps/org/1/reviews/",
            "points": [{"code": f"W{i}", "name": f"Окно {i}"} for i in range(1, points + 1)],
        }],
        "staff": [{"code": f"qrb-{i}", "name": f"Сотрудник {i}", "role": "staff", "office": "QRB"} for i in range(1, points + 1)],
        "roster": [{"staff": f"qrb-{i}", "point": f"QRB/W{i}", "days": "mon-sun", "hours": "00:00-23:59"}
                   for i in range(1, points + 1)],
    }


REASONS = [("wait", "Долгое ожидание"), ("rude", "Невежливое обслуживание"), ("incompetent", "Не смогли помочь"),
           ("price", "Цены"), ("stock", "Нет нужного товара")]


# --------------------------------------------------------------------------- the client process


def client_main(urls: list[str], concurrency: int, warmup: float, duration: float, seed: int, out: Any) -> None:
    """Runs in a spawned process: N requests in flight for warm-up + duration seconds."""
    import aiohttp

    async def run() -> dict[str, Any]:
        rng = random.Random(seed)
        latencies: list[float] = []
        statuses: dict[int, int] = {}
        answered: dict[int, int] = {}  # the whole phase, warm-up and tail included
        measured = 0
        start = time.perf_counter()
        measure_from = start + warmup
        stop_at = measure_from + duration
        counter = 0

        def body() -> bytes:
            r = rng.random()
            if r < 0.90:
                return b"value=good&comment="
            if r < 0.97:
                return ("value=bad&reason=wait&reason=rude&comment=" + "%D0%94%D0%BE%D0%BB%D0%B3%D0%BE" * 8).encode()
            return b"value=neutral&reason=price"

        async def worker(http: aiohttp.ClientSession, wid: int) -> None:
            nonlocal counter, measured
            while True:
                now = time.perf_counter()
                if now >= stop_at:
                    return
                counter += 1
                cookie = f"{seed % 1000:03d}{wid:04d}{counter:015d}"[-22:].rjust(22, "0")
                data = body() + f"&nonce={seed}-{wid}-{counter}".encode()
                t0 = time.perf_counter()
                async with http.post(
                    rng.choice(urls), data=data,
                    headers={"Content-Type": "application/x-www-form-urlencoded", "Cookie": f"ld_phone={cookie}",
                             "Accept-Language": "ru-RU,ru;q=0.9"},
                ) as response:
                    await response.read()
                    status = response.status
                t1 = time.perf_counter()
                answered[status] = answered.get(status, 0) + 1
                if t0 >= measure_from and t1 <= stop_at:
                    latencies.append((t1 - t0) * 1000)
                    statuses[status] = statuses.get(status, 0) + 1
                    measured += 1

        connector = aiohttp.TCPConnector(limit=concurrency, force_close=False)
        async with aiohttp.ClientSession(connector=connector) as http:
            await asyncio.gather(*(worker(http, i) for i in range(concurrency)))
        return {"latencies": latencies, "statuses": statuses, "answered": answered, "measured": measured, "sent": counter,
                "cpu": self_cpu_seconds()}

    out.put(asyncio.run(run()))


# --------------------------------------------------------------------------- the service side


def _asyncpg_url(url: str) -> str:
    return url.replace("postgres://", "postgresql://", 1).split("?", 1)[0]


async def fresh_postgres(admin_url: str, tag: str) -> str:
    """A new database beside ``admin_url``'s (never the one given: it may hold other data)."""
    import asyncpg

    name = f"bench_qr_{tag}"
    conn = await asyncpg.connect(_asyncpg_url(admin_url))
    try:
        await conn.execute(f'CREATE DATABASE "{name}"')
    finally:
        await conn.close()
    return admin_url.split("?", 1)[0].rsplit("/", 1)[0] + f"/{name}"


async def drop_postgres(admin_url: str, url: str) -> None:
    import asyncpg

    conn = await asyncpg.connect(_asyncpg_url(admin_url))
    try:
        await conn.execute(f'DROP DATABASE IF EXISTS "{url.rsplit("/", 1)[1]}" WITH (FORCE)')
    finally:
        await conn.close()



@dataclass
class Phase:
    name: str
    concurrency: int
    rate: float
    p50: float
    p99: float
    ok: int
    other: dict[int, int]
    stored_ok: bool
    batches: int
    service_cpu: float
    loop_cpu: float
    client_cpu: float
    other_cpu: float
    wall: float


async def run(args: argparse.Namespace) -> list[Phase]:
    from bot.app import build
    from bot.models import Channel, Office, Point, Rating, Reason
    from bot.settings import load_settings

    workdir = Path(tempfile.mkdtemp(prefix="bench-qr-"))
    org_path = workdir / "org.yaml"
    org_path.write_text(yaml.safe_dump(make_org(args.points), allow_unicode=True), encoding="utf-8")
    tag = uuid.uuid4().hex[:8]
    database = await fresh_postgres(args.database, tag) if args.database else f"sqlite://{workdir}/loyalty.sqlite3"
    settings = load_settings(
        database_url=database, mqtt_url=args.mqtt_url, mqtt_topic_root=f"bench{tag}/v1",
        mqtt_client_id=f"bench-qr-{tag}", org_file=org_path, http_port=0, bot_token=None,
        audio_dir=workdir / "audio", whisper_cache_dir=workdir / "models", log_level="WARNING",
        survey_ip_per_minute=1_000_000,  # many phones behind one loopback address
    )
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    app = build(settings)
    stop = asyncio.Event()
    phases: list[Phase] = []
    try:
        await app.start(stop)
        for code, label in REASONS:
            await Reason.get_or_create(code=code, defaults={"label": label})
        await Office.filter(code="QRB").update(reason_codes=None)
        await app.holder.reload()
        assert app.surveys is not None
        if args.no_batching:
            app.surveys.writer._max = 1  # one transaction per submission: the baseline
            app.surveys.writer.wait = 0.0
        elif args.commit_wait_ms is not None:
            app.surveys.writer.wait = args.commit_wait_ms / 1000
        if args.dry_store:
            async def no_store(batch: Any) -> None:  # diagnostic: what HTTP and the checks cost alone
                await asyncio.sleep(0)

            app.surveys.writer._store = no_store  # type: ignore[assignment]
        base = app.http.url
        urls = [f"{base}/r/{app.surveys.codes.make('point', p.id)}" for p in await Point.filter(office__code="QRB")]
        ctx = mp.get_context("spawn")
        print(f"service on {base}, database {database.split('@')[-1]}; "
              f"{'one transaction per submission' if args.no_batching else 'group commit'}", file=sys.stderr)
        for n, concurrency in enumerate(args.concurrency):
            before_rows = await Rating.filter(channel=Channel.QR).count()
            before_batches = app.surveys.writer.batches
            out = ctx.Queue()
            process = ctx.Process(target=client_main,
                                  args=(urls, concurrency, args.warmup, args.duration, args.seed + n, out))
            cpu0, busy0, wall0 = self_cpu_seconds(), machine_busy_seconds(), time.perf_counter()
            loop0 = time.thread_time()  # this is the event loop's thread: its CPU alone
            profiler = cProfile.Profile() if args.profile else None
            if profiler:
                profiler.enable()
            process.start()
            while process.is_alive() and out.empty():
                await asyncio.sleep(0.1)
            result = out.get() if not out.empty() else await asyncio.to_thread(out.get, True, 60)
            await asyncio.to_thread(process.join, 10)
            cpu1, busy1, wall1 = self_cpu_seconds(), machine_busy_seconds(), time.perf_counter()
            loop_cpu = time.thread_time() - loop0
            if profiler:
                profiler.disable()
                report = io.StringIO()
                pstats.Stats(profiler, stream=report).sort_stats(args.profile_sort).print_stats(30)
                print(report.getvalue(), file=sys.stderr)
            after_rows = await Rating.filter(channel=Channel.QR).count()
            statuses = result["statuses"]
            ok = statuses.get(200, 0)
            stored_rows = after_rows - before_rows
            sent_total = result["sent"]
            if args.dry_store:
                stored_rows = result["answered"].get(200, 0)
            phase = Phase(
                name=f"c={concurrency}", concurrency=concurrency, rate=ok / args.duration,
                p50=percentile(result["latencies"], 50), p99=percentile(result["latencies"], 99), ok=ok,
                other={k: v for k, v in statuses.items() if k != 200},
                stored_ok=stored_rows == result["answered"].get(200, 0),
                batches=app.surveys.writer.batches - before_batches,
                service_cpu=cpu1 - cpu0, loop_cpu=loop_cpu, client_cpu=result["cpu"],
                other_cpu=max(0.0, (busy1 - busy0) - (cpu1 - cpu0) - result["cpu"]), wall=wall1 - wall0,
            )
            phases.append(phase)
            print(f"{phase.name}: {phase.rate:,.0f}/s p50 {phase.p50:.1f} ms p99 {phase.p99:.1f} ms, "
                  f"{stored_rows} rows for {sent_total} requests, {phase.batches} batches", file=sys.stderr)
            if not phase.stored_ok:
                print(f"  {result['answered'].get(200, 0)} answered 200 but {stored_rows} rows stored!", file=sys.stderr)
    finally:
        stop.set()
        await app.shutdown()
        if args.database and not args.keep:
            await drop_postgres(args.database, database)
        if not args.keep:
            shutil.rmtree(workdir, ignore_errors=True)
    return phases


def print_report(args: argparse.Namespace, phases: list[Phase]) -> None:
    mode = "one transaction per submission" if args.no_batching else "group commit"
    db_name = "PostgreSQL" if args.database and args.database.startswith("postgres") else "SQLite"
    print(f"\n### QR survey submissions ({db_name}, {mode}, {args.duration:.0f} s per phase, {os.cpu_count()} cores)\n")
    print("| concurrency | submissions/s | p50 | p99 | refused | stored = answered 200 | CPU service (its event loop) / client / other, s | target ≥ 1,000/s, p99 ≤ 50 ms |")
    print("| --- | --- | --- | --- | --- | --- | --- | --- |")
    for p in phases:
        met = p.rate >= TARGET_RATE and p.p99 <= TARGET_P99_MS
        refused = ", ".join(f"{k}: {v}" for k, v in sorted(p.other.items())) or "0"
        print(f"| {p.concurrency} | {p.rate:,.0f} | {p.p50:.1f} ms | {p.p99:.1f} ms | {refused} | "
              f"{'yes' if p.stored_ok else '**NO**'} | {p.service_cpu:.1f} ({p.loop_cpu:.1f}) / {p.client_cpu:.1f} / {p.other_cpu:.1f} "
              f"of {p.wall * (os.cpu_count() or 1):.0f} | {'met' if met else '**not met**'} |")
    if phases:
        per = [p.service_cpu / max(1, p.ok) * 1e6 for p in phases]
        print(f"\nService CPU per submission: {min(per):,.0f}–{max(per):,.0f} µs; "
              f"mean batch {sum(p.ok for p in phases) / max(1, sum(p.batches for p in phases)):.1f} submissions.")


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    p.add_argument("--concurrency", type=int, nargs="+", default=[16, 32, 64], help="requests in flight, one phase each")
    p.add_argument("--duration", type=float, default=15.0, help="measured seconds per phase")
    p.add_argument("--warmup", type=float, default=1.0, help="seconds before measuring, per phase")
    p.add_argument("--points", type=int, default=200)
    p.add_argument("--database", default=None, help="postgres://…/db: a fresh database is made beside it and dropped (default: a temporary SQLite file)")
    p.add_argument("--mqtt-url", default="mqtt://127.0.0.1:1883")
    p.add_argument("--no-batching", action="store_true", help="one store_batch per submission (the baseline)")
    p.add_argument("--commit-wait-ms", type=float, default=None, help="how long a batch collects (default: the service's)")
    p.add_argument("--dry-store", action="store_true", help="diagnostic: skip the database (HTTP and checks alone)")
    p.add_argument("--seed", type=int, default=20261126)
    p.add_argument("--keep", action="store_true", help="keep the temporary directory")
    p.add_argument("--profile", action="store_true", help="cProfile the service in each phase (stderr)")
    p.add_argument("--profile-sort", default="tottime", help="pstats sort key for --profile")
    p.add_argument("--quick", action="store_true", help="smoke run: 4 s per phase")
    args = p.parse_args(argv)
    if args.quick:
        args.duration = 4.0
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    phases = asyncio.run(run(args))
    print_report(args, phases)
    return 0


if __name__ == "__main__":
    sys.exit(main())
