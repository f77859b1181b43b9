"""The narrow interface a call uses to keep its audio, and a fake.

Raw audio is kept only when recording is switched on (VOICEBOT_RECORDING=consent)
and the caller allowed it. The call layer never touches files or keys itself:
the app gives it an AudioRecorder (voicebot.storage.recordings.RecordingStore,
encrypted at rest); tests may give it FakeAudioRecorder.
"""

from __future__ import annotations

from typing import Protocol


class AudioSink(Protocol):
    def write(self, pcm: bytes) -> None:
        """16-bit little-endian mono PCM at the call's line rate; never blocks, never raises."""
        ...

    async def close(self) -> None:
        """Everything written is stored (or, after a storage failure, logged and dropped)."""
        ...


class AudioRecorder(Protocol):
    def start(self, call_id: str, sample_rate: int) -> AudioSink: ...


class FakeSink:
    def __init__(self) -> None:
        self.pcm = bytearray()
        self.closed = False

    def write(self, pcm: bytes) -> None:
        self.pcm += pcm

    async def close(self) -> None:
        self.closed = True


class FakeAudioRecorder:
    """Keeps each call's audio in memory: call id -> (sample rate, sink)."""

    def __init__(self) -> None:
        self.calls: dict[str, tuple[int, FakeSink]] = {}

    def start(self, call_id: str, sample_rate: int) -> FakeSink:
        sink = FakeSink()
        self.calls[call_id] = (sample_rate, sink)
        return sink
