"""Scoring benchmark: the bot's own time per button press while specialists fill in forms.

    .venv/bin/python bench/scoring.py                     # 20 specialists, 3 forms each, paced and flat out
    .venv/bin/python bench/scoring.py --quick             # smoke run: 5 specialists, 1 form each
    .venv/bin/python bench/scoring.py --specialists 40 --forms 2 --think 0.5

A fresh SQLite file (WAL, as in production) is migrated with ``bot.db.upgrade``; an
organisation is imported through ``bot.org.import_org`` (one office with four points, one
employee per specialist, N quality specialists with no office, i.e. every office), the test
fixture's ``desk-sales`` checklist through ``bot.checklists.import_checklists``, and a queue of
sampled calls (``Conversation`` with a real Ogg/Opus file, a transcript and rule hits, and a
QUEUED ``SampleItem``) — enough for every specialist's forms in every phase.

The service runs in this process (``bot.app.build`` + ``App.start``, ``http_port=0``, a unique
MQTT root); the Bot API emulator of the tests and the simulated specialists run in a spawned
process of their own (as ``bench/ingest.py`` does with its publisher), so that what is timed is
the bot and not the test rig sharing its event loop. Each specialist is a coroutine that sends
``/score``, waits for the form, and presses its buttons criterion by criterion (a random
allowed answer: Да / Нет / Н/П), then Submit on the summary, then ``/score`` for the next
form. A press is timed from ``press_button`` (the callback update queued in the emulator) to
the emulator's record of the ``editMessageText`` of that form (``sent_log``, stamped when the
bot's request arrived): update delivery (long poll), middleware, the service's checks and
conditional UPDATE, rendering, ``answerCallbackQuery`` and the edit itself. The
``ScoreService`` methods are wrapped on the instance (a probe) to show the service's part.
Presses made while another specialist's ``/score`` (voice upload, transcript, form) is in
flight are shown apart: that is where the tail comes from.

Phases: ``paced`` (each specialist thinks ``--think`` seconds ±50 % between presses, still
several times faster than a person reading a transcript) and ``flat out`` (no think time: the
service's ceiling with N specialists pressing at once; one event loop, so about one core).
Target: p99 ≤ 150 ms per press on 2 cores in the paced phase. The CPU line splits the
service, the emulator with the specialists, and other jobs on the machine (look at it first).
Prints a table and always exits 0: it is a measurement.
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
import statistics
import sys
import tempfile
import time
import uuid
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any

import yaml

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from bench.ingest import machine_busy_seconds, percentile, proc_cpu_seconds, self_cpu_seconds  # noqa: E402

TARGET_P99_MS = 150.0
CHECKLISTS = ROOT / "tests" / "fixtures" / "checklists.yaml"
QUALITY_BASE = 6000  # telegram ids of the specialists: 6001, 6002, …
STAFF_BASE = 7000  # of the employees whose calls are scored
ANSWER_LABELS = ("Да", "Нет", "Н/П")
SERVICE_METHODS = ("answer", "back", "go_to", "skip_to_section", "check", "submit")


# --------------------------------------------------------------------------- small helpers


def ms(seconds: float) -> str:
    return "n/a" if seconds != seconds else f"{seconds * 1000:,.1f} ms"


def p50(values: Sequence[float]) -> float:
    return statistics.median(values) if values else float("nan")


def verdict(ok: bool | None) -> str:
    return "n/a" if ok is None else ("PASS" if ok else "FAIL")


class Table:
    def __init__(self) -> None:
        self.rows: list[tuple[str, ...]] = []

    def add(self, *row: str) -> None:
        self.rows.append(row)

    def render(self, head: tuple[str, ...]) -> str:
        rows = [tuple(r) + ("",) * (len(head) - len(r)) for r in self.rows]
        widths = [max(len(r[i]) for r in [head, *rows]) for i in range(len(head))]
        out = ["  ".join(h.ljust(w) for h, w in zip(head, widths, strict=True)), "  ".join("-" * w for w in widths)]
        out += ["  ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)).rstrip() for r in rows]
        return "\n".join(out)


@dataclass
class Phase:
    name: str
    think: float
    press: list[float] = field(default_factory=list)  # press → edit, seconds
    during_open: list[bool] = field(default_factory=list)  # another specialist's /score was in flight
    opening: int = 0  # /score commands in flight now
    submit: list[float] = field(default_factory=list)  # the Submit press alone
    open: list[float] = field(default_factory=list)  # /score → the form message
    service: list[float] = field(default_factory=list)  # each ScoreService call of a press
    refused: int = 0
    forms: int = 0
    wall: float = 0.0
    cpu_self: float = 0.0  # the service's process
    cpu_users: float = 0.0  # the emulator and the specialists' process
    cpu_machine: float = 0.0
    error: str = ""


# --------------------------------------------------------------------------- the data


def make_org(specialists: int) -> dict[str, Any]:
    staff = [{"code": f"emp{n:03d}", "name": f"Сотрудник {n}", "role": "staff", "office": "MSK-1",
              "telegram_id": STAFF_BASE + n} for n in range(1, specialists + 1)]
    staff += [{"code": f"qa{n:03d}", "name": f"Специалист {n}", "role": "quality", "telegram_id": QUALITY_BASE + n}
              for n in range(1, specialists + 1)]
    return {
        "company": "Bench Retail",
        "defaults": {"language": "ru", "comment_deadline_minutes": 30},
        "offices": [{
            "code": "MSK-1", "name": "Москва, Тверская 1", "timezone": "Europe/Moscow",
            "speech_rules": {"forbidden": ["не знаю"], "required": {"greeting": ["здравствуйте"]}},
            "points": [{"code": f"W{i}", "name": f"Окно {i}"} for i in range(1, 5)],
        }],
        "staff": staff,
    }


def make_ogg() -> bytes:
    """A short real Ogg/Opus call (espeak-ng speech if available, else a second of quiet)."""
    try:
        from tests.speech_samples import desk_clip

        return desk_clip([0.3, "Здравствуйте! Чем могу помочь?", 0.3], "ru", fmt="ogg")
    except Exception:  # noqa: BLE001 - no espeak-ng: the file only has to be a valid voice message
        import numpy as np

        from tests.speech_samples import encode_ogg

        return encode_ogg(np.zeros(16000, dtype=np.float32))


async def seed(url: str, workdir: Path, specialists: int, items: int) -> None:
    from bot import db
    from bot.checklists import import_checklists, load_checklists_file
    from bot.models import Conversation, ConversationKind, Point, SampleItem, SpeechStatus, Staff
    from bot.org import import_org, load_org_file

    await db.upgrade(url)
    await db.connect(url)
    try:
        org_path = workdir / "org.yaml"
        org_path.write_text(yaml.safe_dump(make_org(specialists), allow_unicode=True), encoding="utf-8")
        await import_org(load_org_file(org_path))
        await import_checklists(load_checklists_file(CHECKLISTS))
        audio = workdir / "calls" / "call.ogg"
        audio.parent.mkdir(parents=True, exist_ok=True)
        ogg = make_ogg()
        audio.write_bytes(ogg)
        points = await Point.filter(office__code="MSK-1").order_by("code")
        employees = await Staff.filter(role="staff").order_by("code")
        now = datetime.now(UTC)
        hits = {"forbidden": [], "required": {"greeting": [{"rule": "здравствуйте", "word": "Здравствуйте", "at": 0.3}]},
                "missing": []}
        for n in range(items):
            started = now - timedelta(days=1, minutes=n)
            point = points[n % len(points)]
            conversation = await Conversation.create(
                kind=ConversationKind.CALL, office_id=point.office_id, point_id=point.id,  # type: ignore[attr-defined]
                staff_id=employees[n % len(employees)].id, started_at=started, ended_at=started + timedelta(seconds=3),
                audio_path=str(audio), codec="opus", size_bytes=len(ogg), digest=f"bench-{n}", received_at=started,
                speech_status=SpeechStatus.DONE, transcript="Здравствуйте! Чем могу помочь?",
                transcript_segments=[[0.3, 2.5, "Здравствуйте! Чем могу помочь?"]], rule_hits=hits,
            )
            local = started.astimezone()
            await SampleItem.create(
                month=date(local.year, local.month, 1), staff_id=conversation.staff_id,  # type: ignore[attr-defined]
                office_id=point.office_id, conversation_id=conversation.id, created_at=now + timedelta(seconds=n),  # type: ignore[attr-defined]
            )
    finally:
        await db.close()


# --------------------------------------------------------------------------- a specialist


def peek(emu: Any, chat_id: int) -> dict[int, dict[str, Any]]:
    """The chat's messages as the emulator holds them, not copied: the emulator's own readers
    deep-copy the whole chat on every check, and 20 waiters doing that on every change cost
    more CPU than the bot (this bench only reads them)."""
    chat = emu._chats.get(chat_id)  # noqa: SLF001
    return chat.messages if chat else {}


async def wait_form(emu: Any, user: int, newer_than: int, timeout: float) -> dict[str, Any]:
    def find() -> dict[str, Any] | None:
        for message_id, m in reversed(peek(emu, user).items()):
            if message_id <= newer_than:
                return None
            if m["from"]["id"] == emu.bot_id and "Критерий 1 из" in (m.get("text") or "") and "reply_markup" in m:
                return m
        return None

    return await emu.wait_for(find, timeout=timeout, what=f"the form in chat {user}")


def find_button(message: dict[str, Any], label: str) -> str | None:
    for row in message.get("reply_markup", {}).get("inline_keyboard", []):
        for b in row:
            if b["text"].removeprefix("✅ ") == label:
                return b["callback_data"]
    return None


async def edit_record(emu: Any, since: int, chat_id: int, message_id: int, timeout: float) -> Any:
    """The emulator's record of the bot's next edit of that message (stamped on arrival)."""

    def find() -> Any:
        log = emu.sent_log
        for i in range(since, len(log)):
            r = log[i]
            if r.chat_id == chat_id and r.message_id == message_id and r.method.lower() == "editmessagetext":
                return r
        return None

    return await emu.wait_for(find, timeout=timeout, what=f"the edit of form {chat_id}/{message_id}")


async def specialist(emu: Any, user: int, phase: Phase, forms: int, rng: random.Random, timeout: float) -> None:
    for _ in range(forms):
        newest = max(peek(emu, user), default=0)
        t0 = time.monotonic()
        phase.opening += 1
        await emu.user_message(user, user, "/score")
        try:
            form = await wait_form(emu, user, newest, timeout)
        finally:
            phase.opening -= 1
        sent = next(r for r in reversed(emu.sent_log) if r.chat_id == user and r.message_id == form["message_id"])
        phase.open.append(sent.at - t0)
        form_id = form["message_id"]
        await asyncio.sleep(0.2)  # the form is stored as the form (its revision) just after it is sent
        while True:
            message = peek(emu, user)[form_id]
            submit = find_button(message, "Отправить")
            if submit is not None:
                data = submit
            else:
                options = [d for d in (find_button(message, label) for label in ANSWER_LABELS) if d]
                data = rng.choice(options)
            since = len(emu.sent_log)
            t0 = time.monotonic()
            busy = phase.opening > 0
            query = await emu.press_button(user, user, form_id, data)
            record = await edit_record(emu, since, user, form_id, timeout)
            latency = record.at - t0
            phase.press.append(latency)
            phase.during_open.append(busy or phase.opening > 0)
            if submit is not None:
                phase.submit.append(latency)
            if any(a["id"] == query and a["show_alert"] for a in emu.answered_callbacks):
                phase.refused += 1
            if submit is not None:
                phase.forms += 1
                break
            if phase.think:
                await asyncio.sleep(phase.think * rng.uniform(0.5, 1.5))


# --------------------------------------------------------------------------- the specialists' process


def users_main(conn: Any, specialists: int, timeout: float) -> None:
    """The Bot API emulator and the simulated specialists, in a process of their own (spawned),
    so they do not share the service's event loop and GIL: what is timed is the bot."""
    asyncio.run(_users(conn, specialists, timeout))


async def _users(conn: Any, specialists: int, timeout: float) -> None:
    from tests.telegram_emulator import BotApiEmulator

    emu = BotApiEmulator()
    await emu.start()
    users = [QUALITY_BASE + n for n in range(1, specialists + 1)]
    for user in users:
        emu.add_user(user, f"Специалист {user - QUALITY_BASE}")
    conn.send((emu.url, emu.token))
    loop = asyncio.get_running_loop()
    try:
        while True:
            message = await loop.run_in_executor(None, conn.recv)
            if message[0] == "stop":
                break
            _command, name, think, forms, seed_value = message
            phase = Phase(name, think)
            rng = random.Random(seed_value)
            cpu0, t0 = self_cpu_seconds(), time.perf_counter()
            try:
                await asyncio.gather(*(
                    specialist(emu, user, phase, forms, random.Random(rng.random()), timeout) for user in users
                ))
            except AssertionError as error:  # a press that never got its edit: report, do not hang the parent
                phase.error = str(error)[:2000]
            phase.wall = time.perf_counter() - t0
            phase.cpu_users = self_cpu_seconds() - cpu0
            conn.send(phase)
    finally:
        await emu.stop()


# --------------------------------------------------------------------------- the service's process


async def run(args: argparse.Namespace) -> None:
    from bot.app import build
    from bot.settings import load_settings

    workdir = Path(tempfile.mkdtemp(prefix="loyalty-bench-scoring-"))
    url = f"sqlite://{workdir}/loyalty.sqlite3"
    phases = [("paced", args.think), ("flat out", 0.0)] if not args.paced_only else [("paced", args.think)]
    items = args.specialists * args.forms * len(phases)
    print(f"seeding {items} sampled calls for {args.specialists} specialists in {workdir} …", file=sys.stderr, flush=True)
    await seed(url, workdir, args.specialists, items)

    ctx = mp.get_context("spawn")
    parent, child = ctx.Pipe()
    proc = ctx.Process(target=users_main, args=(child, args.specialists, args.timeout), daemon=True)
    proc.start()
    loop = asyncio.get_running_loop()
    emu_url, token = await loop.run_in_executor(None, parent.recv)
    tag = uuid.uuid4().hex[:8]
    settings = load_settings(
        http_port=0, bot_token=token, telegram_api_url=emu_url, database_url=url, mqtt_url=args.mqtt_url,
        mqtt_topic_root=f"bench{tag}/v1", mqtt_client_id=f"loyalty-bench-scoring-{tag}", audio_dir=workdir / "audio",
        log_level="WARNING",
    )
    app = build(settings)
    stop = asyncio.Event()
    await app.start(stop)
    try:
        await asyncio.wait_for(app.ingest.connected.wait(), 10)
    except TimeoutError:
        print("(MQTT broker not reachable: the ingest keeps retrying; scoring does not need it)", file=sys.stderr)
    scoring = app.dp["scoring"]
    calls: list[float] = []  # every ScoreService call a button press makes, in seconds
    by_method: dict[str, list[float]] = {}

    def probe(name: str) -> None:
        original = getattr(scoring, name)

        async def timed(*a: Any, **kw: Any) -> Any:
            t0 = time.perf_counter()
            try:
                return await original(*a, **kw)
            finally:
                calls.append(time.perf_counter() - t0)
                by_method.setdefault(name, []).append(calls[-1])

        setattr(scoring, name, timed)

    for name in SERVICE_METHODS:
        probe(name)
    results: list[Phase] = []
    try:
        for name, think in phases:
            first_call = len(calls)
            cpu0, busy0, users0 = self_cpu_seconds(), machine_busy_seconds(), proc_cpu_seconds(proc.pid)
            print(f"phase {name}: {args.specialists} specialists × {args.forms} forms …", file=sys.stderr, flush=True)
            profiler = cProfile.Profile() if args.profile == name else None
            if profiler is not None:
                profiler.enable()
            parent.send(("phase", name, think, args.forms, args.seed))
            phase: Phase = await loop.run_in_executor(None, parent.recv)
            if profiler is not None:
                profiler.disable()
                out = io.StringIO()
                pstats.Stats(profiler, stream=out).sort_stats(args.profile_sort).print_stats(40)
                print(out.getvalue(), file=sys.stderr)
            phase.cpu_self = self_cpu_seconds() - cpu0
            phase.cpu_users = proc_cpu_seconds(proc.pid) - users0
            phase.cpu_machine = machine_busy_seconds() - busy0
            phase.service = calls[first_call:]
            results.append(phase)
            if phase.error:
                print(f"phase {name} stopped: {phase.error}", file=sys.stderr)
                break
            if args.verbose:
                for method, values in sorted(by_method.items()):
                    print(f"  {name} {method}: n={len(values)} median {ms(p50(values))} p99 {ms(percentile(values, 99))}",
                          file=sys.stderr)
                by_method.clear()
    finally:
        stop.set()
        await app.shutdown()
        parent.send(("stop",))
        await loop.run_in_executor(None, proc.join, 10)
        if proc.is_alive():
            proc.kill()
        if not args.keep:
            shutil.rmtree(workdir, ignore_errors=True)
    print_report(args, results)


def print_report(args: argparse.Namespace, phases: list[Phase]) -> None:
    cores = os.cpu_count() or 1
    print(f"\n## Scoring: press → edited form, {args.specialists} specialists at once, SQLite, {cores} cores\n")
    t = Table()
    for phase in phases:
        presses = phase.press
        p99 = percentile(presses, 99)
        target = f"p99 ≤ {TARGET_P99_MS:.0f} ms" if phase.name == "paced" else ""
        result = verdict(p99 * 1000 <= TARGET_P99_MS) if phase.name == "paced" and presses and not phase.error else ""
        think = f"think {phase.think:.2f} s ±50 %" if phase.think else "no think time"
        t.add(phase.name, "presses (forms submitted)", f"{len(presses)} ({phase.forms})", think)
        t.add("", "press → edit: median", ms(p50(presses)))
        t.add("", "press → edit: p95", ms(percentile(presses, 95)))
        t.add("", "press → edit: p99", ms(p99), target, result)
        t.add("", "press → edit: max", ms(max(presses, default=float("nan"))))
        quiet = [x for x, b in zip(presses, phase.during_open, strict=True) if not b]
        loud = [x for x, b in zip(presses, phase.during_open, strict=True) if b]
        t.add("", "… while no /score is in flight: p99", f"{ms(percentile(quiet, 99))} (n={len(quiet)})")
        t.add("", "… while another /score is: p99", f"{ms(percentile(loud, 99))} (n={len(loud)})",
              "voice upload + transcript + form of others")
        t.add("", "Submit press: median / p99", f"{ms(p50(phase.submit))} / {ms(percentile(phase.submit, 99))}")
        t.add("", "/score → form: median / p99", f"{ms(p50(phase.open))} / {ms(percentile(phase.open, 99))}",
              "voice + transcript + form")
        t.add("", "in ScoreService: median / p99", f"{ms(p50(phase.service))} / {ms(percentile(phase.service, 99))}",
              "checks + conditional UPDATE (database)")
        t.add("", "presses refused", str(phase.refused), "0 expected")
        t.add("", "throughput", f"{len(presses) / max(phase.wall, 1e-9):.1f} presses/s over {phase.wall:.1f} s")
        wall = max(phase.wall, 1e-9)
        others = max(phase.cpu_machine - phase.cpu_self - phase.cpu_users, 0.0)
        t.add("", "CPU (cores)", f"service {phase.cpu_self / wall:.2f} · emulator + specialists {phase.cpu_users / wall:.2f}"
              f" · everything else on the machine {others / wall:.2f}")
        if phase.error:
            t.add("", "stopped early", phase.error.splitlines()[0][:100])
    print(t.render(("phase", "figure", "value", "target / note", "result")))
    print("\nThe service (bot.app, in this process) and the emulator with the simulated specialists (a "
          "spawned process) each have one event loop; the last CPU figure is other jobs on the machine.")


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    p.add_argument("--specialists", type=int, default=20)
    p.add_argument("--forms", type=int, default=3, help="forms each specialist fills in per phase")
    p.add_argument("--think", type=float, default=0.5, help="seconds between presses in the paced phase (±50 %%)")
    p.add_argument("--paced-only", action="store_true", help="skip the flat-out phase")
    p.add_argument("--seed", type=int, default=20261126)
    p.add_argument("--timeout", type=float, default=30.0, help="give up on a press after this many seconds")
    p.add_argument("--mqtt-url", default="mqtt://127.0.0.1:1883")
    p.add_argument("--keep", action="store_true", help="keep the temporary directory (database, audio)")
    p.add_argument("--profile", default=None, choices=["paced", "flat out"], help="cProfile that phase (stderr)")
    p.add_argument("--profile-sort", default="tottime", help="pstats sort key for --profile")
    p.add_argument("--quick", action="store_true", help="smoke run: 5 specialists, 1 form each")
    p.add_argument("--verbose", action="store_true", help="ScoreService time per method, per phase (stderr)")
    args = p.parse_args(argv)
    if args.quick:
        args.specialists, args.forms = 5, 1
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    logging.basicConfig(level=logging.WARNING)
    asyncio.run(run(args))
    return 0


if __name__ == "__main__":
    sys.exit(main())
