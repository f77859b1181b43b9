"""Call recordings, encrypted at rest: one file per call in VOICEBOT_RECORDING_DIR.

Only calls whose caller allowed recording get one (voicebot.call.recording is
the interface the call uses). A file is a JSON header line naming the call,
its sample rate and start time (nothing personal), then the caller's audio in
chunks of about a second, each `length (4 bytes, big-endian) ‖ sealed chunk`,
sealed with the privacy layer's current key (AES-256-GCM, see
voicebot.privacy.crypto) and bound to its call and position. The file name is
a hash of the call id, the directory owner-only (0700), each file 0600.
Erasing overwrites a file with zeros before unlinking it.

Writes happen on a worker thread, one chunk at a time, in order; a disk that
falls too far behind (MAX_QUEUED chunks) or fails ends that recording (logged
by call id), never the call.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import logging
import os
import struct
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, BinaryIO

import numpy as np

from voicebot.audio.wav import wav_bytes
from voicebot.privacy.crypto import Privacy

log = logging.getLogger(__name__)
FORMAT = "voicebot.recording.v1"
CHUNK_S = 1.0
MAX_QUEUED = 30  # chunks waiting for the disk
_LENGTH = struct.Struct(">I")


@dataclass(frozen=True)
class Recording:
    call_id: str
    sample_rate: int
    started_at: float
    pcm: bytes  # 16-bit little-endian mono

    @property
    def seconds(self) -> float:
        return len(self.pcm) / 2 / self.sample_rate

    def wav(self) -> bytes:
        return wav_bytes(np.frombuffer(self.pcm, "<i2"), self.sample_rate)


class RecordingStore:
    def __init__(self, directory: str | Path, privacy: Privacy) -> None:
        self.directory = Path(directory)
        self.privacy = privacy

    def path(self, call_id: str) -> Path:
        return self.directory / (hashlib.sha256(call_id.encode()).hexdigest()[:32] + ".rec")

    def start(self, call_id: str, sample_rate: int) -> SealedSink:
        return SealedSink(self, call_id, sample_rate)

    async def read(self, call_id: str) -> Recording | None:
        return await asyncio.to_thread(self._read, self.path(call_id))

    async def erase(self, call_ids: list[str]) -> int:
        return await asyncio.to_thread(lambda: sum(_shred(self.path(i)) for i in call_ids))

    async def erase_started_before(self, cutoff: float) -> list[str]:
        """Recordings of calls that started before `cutoff` (their own retention)."""
        return await asyncio.to_thread(self._erase_before, cutoff)

    async def check_keys(self) -> None:
        """Refuse (UndecryptableData) when a recording is under a key that is not configured."""
        await asyncio.to_thread(self._check_keys)

    async def rewrite(self) -> int:
        """Re-seal every recording under the current key (`voicebot privacy rotate-key`)."""
        return await asyncio.to_thread(self._rewrite_all)

    # --- on the worker thread ------------------------------------------------------
    def _files(self) -> list[Path]:
        return sorted(self.directory.glob("*.rec")) if self.directory.is_dir() else []

    def _read(self, path: Path) -> Recording | None:
        try:
            with path.open("rb") as f:
                header = json.loads(f.readline())
                chunks = [self.privacy.unseal_bytes(blob, f"{header['call_id']}:{i}")
                          for i, blob in enumerate(_blobs(f))]
        except (FileNotFoundError, NotADirectoryError):
            return None
        return Recording(header["call_id"], header["sample_rate"], header["started_at"], b"".join(chunks))

    def _erase_before(self, cutoff: float) -> list[str]:
        erased = []
        for path in self._files():
            header = _header(path)
            if header is not None and header["started_at"] < cutoff and _shred(path):
                erased.append(header["call_id"])
        return erased

    def _check_keys(self) -> None:
        for path in self._files():
            with path.open("rb") as f:
                header = json.loads(f.readline())
                for blob in _blobs(f):
                    self.privacy.unseal_bytes(blob, f"{header['call_id']}:0")
                    break

    def _rewrite_all(self) -> int:
        count = 0
        for path in self._files():
            recording = self._read(path)
            if recording is None:
                continue
            step = int(recording.sample_rate * 2 * CHUNK_S)
            chunks = [recording.pcm[i:i + step] for i in range(0, len(recording.pcm), step)]
            fresh = path.with_suffix(".new")
            _shred(fresh)
            self._write(fresh, recording.call_id, recording.sample_rate, recording.started_at, chunks)
            os.replace(fresh, path)
            count += 1
        return count

    def _write(self, path: Path, call_id: str, rate: int, started_at: float,
               chunks: list[bytes], first: int = 0) -> None:
        """Append `chunks` (creating the file with its header when `first` is 0)."""
        if first == 0:
            self.directory.mkdir(mode=0o700, parents=True, exist_ok=True)
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        else:
            fd = os.open(path, os.O_WRONLY | os.O_APPEND)
        with os.fdopen(fd, "wb") as f:
            if first == 0:
                f.write(json.dumps({"format": FORMAT, "call_id": call_id, "sample_rate": rate,
                                    "encoding": "pcm16le", "started_at": started_at}).encode() + b"\n")
            for index, chunk in enumerate(chunks, first):
                blob = self.privacy.seal_bytes(chunk, f"{call_id}:{index}")
                f.write(_LENGTH.pack(len(blob)) + blob)


class SealedSink:
    """One call's recording (voicebot.call.recording.AudioSink)."""

    def __init__(self, store: RecordingStore, call_id: str, sample_rate: int) -> None:
        self.store, self.call_id, self.sample_rate = store, call_id, sample_rate
        self.started_at = time.time()
        self._chunk_bytes = int(sample_rate * 2 * CHUNK_S)
        self._buffer = bytearray()
        self._queue: list[bytes] = []
        self._written = 0  # chunks on disk
        self._writer: asyncio.Task[None] | None = None
        self._failed = False

    def write(self, pcm: bytes) -> None:
        if self._failed:
            return
        self._buffer += pcm
        if len(self._buffer) >= self._chunk_bytes:
            self._flush()

    async def close(self) -> None:
        self._flush()
        if self._writer is not None:
            await self._writer

    def _flush(self) -> None:
        chunk, self._buffer = bytes(self._buffer), bytearray()
        if not chunk or self._failed:
            return
        if len(self._queue) >= MAX_QUEUED:
            log.error("call %r: recording dropped: the disk is %d s behind", self.call_id, MAX_QUEUED)
            self._fail()
            return
        self._queue.append(chunk)
        if self._writer is None or self._writer.done():
            self._writer = asyncio.ensure_future(self._drain())

    async def _drain(self) -> None:
        while self._queue and not self._failed:
            chunk = self._queue.pop(0)
            try:
                await asyncio.to_thread(self.store._write, self.store.path(self.call_id), self.call_id,
                                        self.sample_rate, self.started_at, [chunk], self._written)
            except Exception as exc:  # noqa: BLE001 - a recording never takes the call down
                log.error("call %r: writing the recording failed: %s", self.call_id, type(exc).__name__)
                self._fail()
                return
            self._written += 1

    def _fail(self) -> None:
        self._failed = True
        self._queue.clear()


def _blobs(f: BinaryIO) -> Iterator[bytes]:
    while len(head := f.read(_LENGTH.size)) == _LENGTH.size:
        (size,) = _LENGTH.unpack(head)
        yield f.read(size)


def _header(path: Path) -> dict[str, Any] | None:
    try:
        with path.open("rb") as f:
            header: dict[str, Any] = json.loads(f.readline())
            return header
    except (FileNotFoundError, ValueError):
        return None


def _shred(path: Path) -> bool:
    """Overwrite with zeros, then unlink; False when there was no such file."""
    try:
        size = path.stat().st_size
        with path.open("r+b") as f:
            f.write(bytes(size))
            f.flush()
            os.fsync(f.fileno())
        path.unlink()
    except FileNotFoundError:
        return False
    return True
