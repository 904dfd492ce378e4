"""The segment store on disk: one folder per point and day, files named by start time.

Filesystem only (the index lives in the database, kept by ``bot.audio``). Writes go to a
temporary name first and are renamed into place, so a crash never leaves half a segment
that the index could point to.
"""

from __future__ import annotations

import hashlib
import os
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

EXTENSIONS = {"opus": "ogg", "vorbis": "ogg", "flac": "flac", "mp3": "mp3", "aac": "m4a"}


@dataclass(frozen=True, slots=True)
class StoredFile:
    path: Path
    size_bytes: int
    digest: str


class SegmentStore:
    def __init__(self, root: Path) -> None:
        self.root = root

    def path_for(self, office: str, point: str, started_at: datetime, digest: str, codec: str) -> Path:
        extension = EXTENSIONS.get(codec, "wav" if codec.startswith("pcm") else "bin")
        day = started_at.strftime("%Y-%m-%d")
        name = f"{int(started_at.timestamp() * 1000)}-{digest[:12]}.{extension}"
        return self.root / f"{office}_{point}" / day / name

    def write(self, office: str, point: str, started_at: datetime, codec: str, data: bytes) -> StoredFile:
        digest = hashlib.sha256(data).hexdigest()
        path = self.path_for(office, point, started_at, digest, codec)
        if not path.exists():
            path.parent.mkdir(parents=True, exist_ok=True)
            partial = path.with_suffix(path.suffix + ".part")
            partial.write_bytes(data)
            os.replace(partial, path)
        return StoredFile(path, len(data), digest)

    def usage_bytes(self) -> int:
        return sum(f.stat().st_size for f in self.root.rglob("*") if f.is_file()) if self.root.exists() else 0
