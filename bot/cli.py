"""The `loyalty` command: run, db upgrade, org import, check, simulate, device token."""

from __future__ import annotations

import argparse
import asyncio
import logging
import signal
import sys
import time
from collections.abc import Sequence
from pathlib import Path

from bot.settings import Settings, SettingsError, load_settings

log = logging.getLogger("loyalty")


def _setup_logging(settings: Settings) -> None:
    logging.basicConfig(
        level=settings.log_level, format="%(asctime)s %(levelname)s %(name)s: %(message)s", stream=sys.stderr
    )
    logging.getLogger("aiogram.event").setLevel(logging.WARNING)


async def _run(settings: Settings) -> int:
    from bot.app import build

    app = build(settings)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    log.info("starting: database %s, broker %s, Bot API %s", settings.database_url, settings.mqtt_url, settings.telegram_api_url)
    await app.run(stop)
    log.info("stopped cleanly")
    return 0


async def _demo(args: argparse.Namespace) -> int:
    """The sandbox: everything on this machine, the chats in a browser (bot/demo.py)."""
    from bot.demo import DemoOptions, run_demo

    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    options = DemoOptions(
        port=args.port, host=args.host, traffic=not args.no_traffic, interval=args.interval, broker=args.broker,
        workdir=args.data_dir,
    )
    await run_demo(options, stop)
    log.info("demo stopped cleanly")
    return 0


async def _db_upgrade(settings: Settings) -> int:
    from bot import db

    await db.upgrade(settings.database_url)
    print(f"database {settings.database_url}: schema up to date")
    return 0


async def _org_import(settings: Settings, path: Path) -> int:
    from bot import db
    from bot.org import OrgFileError, import_org, load_org_file

    try:
        org = load_org_file(path)
    except OrgFileError as error:
        print(error, file=sys.stderr)
        return 2
    await db.upgrade(settings.database_url)
    await db.connect(settings.database_url)
    try:
        report = await import_org(org)
    except OrgFileError as error:
        print(error, file=sys.stderr)
        return 2
    finally:
        await db.close()
    for line in report.lines():
        print(line)
    return 0


async def _checklists_import(settings: Settings, path: Path) -> int:
    """Each checklist of the file becomes a new version where it changed; nothing is deleted."""
    from bot import db
    from bot.checklists import ChecklistFileError, import_checklists, load_checklists_file

    try:
        checklists = load_checklists_file(path)
    except ChecklistFileError as error:
        print(error, file=sys.stderr)
        return 2
    await db.upgrade(settings.database_url)
    await db.connect(settings.database_url)
    try:
        report = await import_checklists(checklists)
    finally:
        await db.close()
    for line in report.lines():
        print(line)
    return 0


async def _check(settings: Settings) -> int:
    """Each dependency gets one line and a verdict; the exit code says whether all passed."""
    import aiomqtt
    from aiogram import Bot

    from bot import db

    ok = True

    def verdict(name: str, good: bool, detail: str) -> None:
        nonlocal ok
        ok = ok and good
        print(f"{'OK  ' if good else 'FAIL'} {name}: {detail}")

    verdict("settings", True, "loaded")
    try:
        await db.upgrade(settings.database_url)
        await db.connect(settings.database_url)
        from bot.models import DeadLetter, Office, OutboxMessage, OutboxStatus

        offices = await Office.all().count()
        pending = await OutboxMessage.filter(status=OutboxStatus.PENDING).count()
        dead = await DeadLetter.all().count()
        verdict("database", True, f"{settings.database_url} ({offices} offices, {pending} messages pending, {dead} dead letters)")
    except Exception as exc:
        verdict("database", False, f"{settings.database_url}: {exc}")
    finally:
        await db.close()
    from bot.retention import measure
    from speech.models import describe_model

    loop = asyncio.get_running_loop()
    line = await loop.run_in_executor(None, describe_model, settings.whisper_model, settings.whisper_cache_dir)
    verdict("speech", line.endswith("loads OK"), line)
    usage = await loop.run_in_executor(None, measure, settings.audio_dir, settings.audio_disk_cap_mb * 1_048_576)
    verdict("audio store", not usage.over_cap, usage.describe())
    target = settings.mqtt
    try:
        async with aiomqtt.Client(target.host, target.port, username=target.username, password=target.password, timeout=5):
            verdict("broker", True, f"{target.host}:{target.port} answers")
    except Exception as exc:
        verdict("broker", False, f"{target.host}:{target.port}: {exc}")
    try:
        from bot.app import make_bot

        bot: Bot = make_bot(settings)
        try:
            me = await bot.get_me()
            verdict("telegram", True, f"{settings.telegram_api_url} as @{me.username}")
        finally:
            await bot.session.close()
    except SettingsError as exc:
        verdict("telegram", False, str(exc))
    except Exception as exc:
        verdict("telegram", False, f"{settings.telegram_api_url}: {exc}")
    return 0 if ok else 1


async def _simulate(settings: Settings, args: argparse.Namespace) -> int:
    import aiomqtt

    from bot import db
    from bot.directory import Directory
    from devices.simulator import KioskPlan, TrafficPlan, run_simulation

    await db.upgrade(settings.database_url)
    await db.connect(settings.database_url)
    try:
        directory = await Directory.load()
    finally:
        await db.close()
    devices = directory.devices
    if not devices:
        print("no devices configured: run `loyalty org import FILE` first", file=sys.stderr)
        return 2
    plan: TrafficPlan | KioskPlan
    if args.kiosk:
        kiosks = [d for d in devices if d.kind == "kiosk"]
        if not kiosks:
            print("no kiosks configured: add a device with `kind: kiosk` to the org file", file=sys.stderr)
            return 2
        reasons = [code for code, reason in directory.reasons.items() if reason.active]
        plan = KioskPlan(
            kiosks, root=settings.mqtt_topic_root, rate=args.rate, duration=args.duration,
            negative_share=args.negative_share, bad_share=args.bad_share, seed=args.seed or 0,
            **({"reasons": reasons} if reasons else {}),
        )
    else:
        plan = TrafficPlan(
            devices, root=settings.mqtt_topic_root, rate=args.rate, duration=args.duration,
            negative_share=args.negative_share, bad_share=args.bad_share, seed=args.seed,
        )
    target = settings.mqtt
    started = time.monotonic()
    async with aiomqtt.Client(target.host, target.port, username=target.username, password=target.password) as client:

        async def publish(topic: str, payload: bytes, qos: int, retain: bool) -> None:
            await client.publish(topic, payload, qos=qos, retain=retain)

        def progress(done: int, total: int) -> None:
            if done % max(1, total // 20) == 0 or done == total:
                print(f"\rpublished {done}/{total} ({time.monotonic() - started:.0f} s)", end="", flush=True)

        await run_simulation(publish, plan, progress=progress)
    print(f"\ndone: {plan.count} messages to {target.host}:{target.port} under {settings.mqtt_topic_root}")
    return 0


async def _device_token(settings: Settings, device_id: str) -> int:
    """A new upload token, shown once: only its hash is stored, so it cannot be shown again."""
    from bot import db
    from bot.uploads import DeviceTokens, UnknownDevice

    await db.upgrade(settings.database_url)
    await db.connect(settings.database_url)
    try:
        token = await DeviceTokens().issue(device_id)
    except UnknownDevice:
        print(f"device {device_id!r} is not in the org: add it under devices: and run `loyalty org import FILE`", file=sys.stderr)
        return 2
    finally:
        await db.close()
    host = settings.http_host if settings.http_host not in ("0.0.0.0", "::", "") else "SERVER"
    host = f"[{host}]" if ":" in host else host
    print(f"device {device_id}: new upload token (the previous one, if any, no longer works)")
    print(f"  {token}")
    print("It is shown only this once; keep it in the recorder's settings. Upload a segment with:")
    print(
        f"  curl -H 'Authorization: Bearer {token}' -F started_at=$(date +%s000) -F file=@segment.ogg"
        f" http://{host}:{settings.http_port}/api/v1/audio"
    )
    print("a phone call: add -F kind=call -F caller=+79990001122 -F staff=STAFF_CODE")
    return 0


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="loyalty", description="Loyalty Desk: feedback buttons → Telegram")
    sub = parser.add_subparsers(dest="command", required=True)
    sub.add_parser("run", help="bot polling + MQTT ingest + outbox + deadlines (migrates on start)")
    dbp = sub.add_parser("db", help="database schema")
    dbp.add_argument("action", choices=["upgrade"])
    org = sub.add_parser("org", help="organisation file")
    org.add_argument("action", choices=["import"])
    org.add_argument("file", type=Path)
    checklists = sub.add_parser("checklists", help="quality checklist templates (a changed checklist adds a version)")
    checklists.add_argument("action", choices=["import"])
    checklists.add_argument("file", type=Path)
    sub.add_parser("check", help="settings, database, broker and Bot API, each with a verdict")
    dev = sub.add_parser("device", help="devices: a new upload token for the HTTP API")
    dev.add_argument("action", choices=["token"])
    dev.add_argument("device_id", help="the device's id in the org file")
    sim = sub.add_parser("simulate", help="publish realistic device traffic to the broker")
    sim.add_argument("--rate", type=float, default=5.0, help="messages per second (default 5)")
    sim.add_argument("--duration", type=float, default=60.0, help="seconds (default 60)")
    sim.add_argument("--negative-share", type=float, default=0.15)
    sim.add_argument("--bad-share", type=float, default=0.02, help="share of malformed payloads")
    sim.add_argument("--seed", type=int, default=None)
    sim.add_argument("--kiosk", action="store_true", help="exit-kiosk feedback (ratings with reasons, NPS, complaints) instead of button presses")
    demo = sub.add_parser("demo", help="the whole loop in a browser, no Telegram token needed")
    demo.add_argument("--port", type=int, default=8080, help="web page port (default 8080, else the next free one; 0: any)")
    demo.add_argument("--host", default="127.0.0.1", help="web page address (default 127.0.0.1)")
    demo.add_argument("--interval", type=float, default=7.0, help="seconds between simulated events (default 7)")
    demo.add_argument("--no-traffic", action="store_true", help="no automatic traffic: only the buttons pressed in the page")
    demo.add_argument("--broker", choices=["auto", "mosquitto", "amqtt"], default="auto",
                      help="auto: MQTT_URL if it answers, else Mosquitto on a free port, else embedded amqtt")
    demo.add_argument("--data-dir", type=Path, default=None, help="keep the demo database here (default: a temporary folder)")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    try:
        settings = load_settings()
    except SettingsError as error:
        print(f"configuration error: {error}", file=sys.stderr)
        return 2
    _setup_logging(settings)
    try:
        if args.command == "run":
            return asyncio.run(_run(settings))
        if args.command == "db":
            return asyncio.run(_db_upgrade(settings))
        if args.command == "org":
            return asyncio.run(_org_import(settings, args.file))
        if args.command == "checklists":
            return asyncio.run(_checklists_import(settings, args.file))
        if args.command == "check":
            return asyncio.run(_check(settings))
        if args.command == "device":
            return asyncio.run(_device_token(settings, args.device_id))
        if args.command == "demo":
            return asyncio.run(_demo(args))
        if args.command == "simulate":
            if args.seed is None:
                args.seed = int(time.time())
            return asyncio.run(_simulate(settings, args))
    except SettingsError as error:
        print(f"configuration error: {error}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130
    return 2


if __name__ == "__main__":
    sys.exit(main())
