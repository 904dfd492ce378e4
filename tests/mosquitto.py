"""A private Mosquitto started from the shipped ``devices/mosquitto.conf`` (tests only).

The system broker keeps Debian's queue limits; tests that queue thousands of messages for an
offline client, or restart the broker, start this one on a free port instead.
"""

from __future__ import annotations

import asyncio
import os
import socket
import time
from pathlib import Path

HOST = "127.0.0.1"
BROKER_CONF = Path(__file__).resolve().parent.parent / "devices" / "mosquitto.conf"
MOSQUITTO = "/usr/sbin/mosquitto"


def free_port() -> int:
    with socket.socket() as s:
        s.bind((HOST, 0))
        return int(s.getsockname()[1])


class PrivateBroker:
    """Mosquitto started from the shipped config, on a free port, persisting into ``data``."""

    def __init__(self, data: Path) -> None:
        self.port = free_port()
        self.data = data
        self.conf = data / "mosquitto.conf"
        self.log = data / "mosquitto.log"
        self._proc: asyncio.subprocess.Process | None = None
        lines = []
        for line in BROKER_CONF.read_text(encoding="utf-8").splitlines():
            if line.startswith("listener "):
                line = f"listener {self.port} {HOST}"
            elif line.startswith("persistence_location "):
                line = f"persistence_location {data}/"
            lines.append(line)
        assert f"listener {self.port} {HOST}" in lines, "the shipped config must have a `listener` line"
        if os.geteuid() == 0:
            lines.append("user root")  # it would switch to `mosquitto`, who cannot write tmp_path
        self.conf.write_text("\n".join(lines) + "\n", encoding="utf-8")

    async def start(self) -> None:
        with self.log.open("ab") as log:
            self._proc = await asyncio.create_subprocess_exec(MOSQUITTO, "-c", str(self.conf), stdout=log, stderr=log)
        deadline = time.monotonic() + 10
        while True:
            try:
                _, writer = await asyncio.open_connection(HOST, self.port)
                writer.close()
                return
            except OSError:
                if self._proc.returncode is not None or time.monotonic() > deadline:
                    raise AssertionError(f"mosquitto did not start: {self.log.read_text(errors='replace')}") from None
                await asyncio.sleep(0.05)

    async def stop(self) -> None:
        """SIGTERM: a clean shutdown, which writes the persistence file."""
        if self._proc is not None and self._proc.returncode is None:
            self._proc.terminate()
            await asyncio.wait_for(self._proc.wait(), 10)
