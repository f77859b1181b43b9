"""FrameBatcher: the VAD front end of many calls run together must decide
exactly what each call's own SpeechDetector decides, in order, within a tick."""


import numpy as np
import pytest

from voicebot.audio.batch import FrameBatcher
from voicebot.audio.codecs import ulaw_decode, ulaw_encode
from voicebot.audio.resample import StreamResampler
from voicebot.audio.vad import (
    SpeechAudio,
    SpeechDetector,
    SpeechStarted,
    VadConfig,
)
from voicebot.audio.wav import read_wav

from .conftest import FIXTURES, manifest


def _summary(events):
    """Events as comparable values: kind, time, and the audio's bytes."""
    out = []
    for e in events:
        if isinstance(e, SpeechAudio):
            out.append(("audio", e.samples.tobytes()))
        elif isinstance(e, SpeechStarted):
            out.append(("start", round(e.at, 6)))
        else:
            out.append(("end", round(e.at, 6), e.forced))
    return out


def _line(name: str) -> bytes:
    samples, _ = read_wav(FIXTURES / name, 8000)
    return ulaw_encode(samples)


def _reference(data: bytes, rate: int = 8000, encoding: str = "mulaw", chunk: int = 160) -> list:
    det = SpeechDetector(rate, VadConfig())
    events = []
    step = chunk * (1 if encoding == "mulaw" else 2)
    for i in range(0, len(data), step):
        piece = data[i:i + step]
        events += det.push(ulaw_decode(piece) if encoding == "mulaw" else np.frombuffer(piece, "<i2"))
    return _summary(events + det.flush())


def test_batched_calls_decide_exactly_like_their_own_detectors():
    files = [e["file"] for e in manifest()][:8]
    lines = [_line(f) for f in files]
    batcher = FrameBatcher(None)
    got = {f: [] for f in files}
    lanes = [batcher.lane(8000, "mulaw", VadConfig(), got[f].extend) for f in files]
    # each call in 20 ms messages, the calls offset from one another, one flush per tick
    for tick in range(max(len(x) for x in lines) // 160 + 40):
        for k, (lane, data) in enumerate(zip(lanes, lines, strict=True)):
            i = (tick - 5 * k) * 160
            if 0 <= i < len(data):
                lane.push(data[i:i + 160])
        batcher.flush()
    for f, lane in zip(files, lanes, strict=True):
        got[f] += lane.end()
        assert _summary(got[f]) == _reference(_line(f)), f
    assert any(isinstance(e, SpeechStarted) for f in files for e in got[f])


def test_odd_message_sizes_and_pcm16_at_16k_are_reframed():
    samples, _ = read_wav(FIXTURES / "en_human_agent.wav", 16000)
    data = samples.astype("<i2").tobytes()
    batcher = FrameBatcher(None, max_frames=7)  # also flushes on a full queue
    events = []
    lane = batcher.lane(16000, "pcm16", VadConfig(), events.extend)
    sizes = [2, 998, 640, 6, 3334]  # whole samples, never whole frames
    i = k = 0
    while i < len(data):
        lane.push(data[i:i + sizes[k % len(sizes)]])
        i += sizes[k % len(sizes)]
        k += 1
    batcher.flush()
    events += lane.end()
    whole = len(data) // 640 * 640  # the partial last frame never reaches the VAD
    assert _summary(events) == _reference(data[:whole], 16000, "pcm16", 320)
    assert sum(isinstance(e, SpeechStarted) for e in events) == 1


def test_drain_delivers_queued_speech_before_returning():
    batcher = FrameBatcher(None)
    events = []
    lane = batcher.lane(8000, "mulaw", VadConfig(), events.extend)
    lane.push(_line("en_human_agent.wav")[:16000])  # 2 s: speech starts at 1 s
    assert events == []
    lane.drain()
    assert isinstance(events[0], SpeechStarted)


def test_one_failing_call_does_not_stop_the_others():
    batcher = FrameBatcher(None)
    good = []

    def broken(events):
        raise RuntimeError("bug in one call")

    bad_lane = batcher.lane(8000, "mulaw", VadConfig(), broken)
    lane = batcher.lane(8000, "mulaw", VadConfig(), good.extend)
    data = _line("en_human_agent.wav")
    bad_lane.push(data)
    lane.push(data)
    batcher.flush()
    assert any(isinstance(e, SpeechStarted) for e in good)


def test_closed_lane_takes_nothing_more():
    batcher = FrameBatcher(None)
    events = []
    lane = batcher.lane(8000, "mulaw", VadConfig(), events.extend)
    lane.close()
    lane.push(_line("en_human_agent.wav"))
    batcher.flush()
    assert events == []


class FakeClock:
    """A Schedule that runs nothing by itself: the test fires what is due."""

    def __init__(self) -> None:
        self.timers: list[FakeTimer] = []

    def __call__(self, delay: float, callback) -> "FakeTimer":
        timer = FakeTimer(delay, callback)
        self.timers.append(timer)
        return timer

    def fire(self) -> list[float]:
        """Run every timer not cancelled; their delays."""
        due, self.timers = [t for t in self.timers if not t.cancelled], []
        for timer in due:
            timer.callback()
        return [t.delay for t in due]


class FakeTimer:
    def __init__(self, delay: float, callback) -> None:
        self.delay, self.callback, self.cancelled = delay, callback, False

    def cancel(self) -> None:
        self.cancelled = True


def test_real_time_messages_wait_for_the_tick_and_a_backlog_does_not():
    clock = FakeClock()
    batcher = FrameBatcher(clock, tick_s=0.03)
    data = _line("en_human_agent.wav")
    delivered: list[list] = []

    paced = batcher.lane(8000, "mulaw", VadConfig(), delivered.append)
    for i in range(0, 12000, 160):  # 1.5 s in 20 ms messages, one per tick: the timer flushes
        paced.push(data[i:i + 160])
        assert delivered == []  # never inside push()
        assert clock.fire() == [0.03]  # each message is held for the tick, then flushed by it
        if delivered:
            break
    assert delivered, "the VAD's events reached the call"
    paced.close()

    delivered.clear()
    burst = batcher.lane(8000, "mulaw", VadConfig(), delivered.append)
    burst.push(data[:12000])  # 1.5 s at once: a backlog, run on the loop's next turn
    assert delivered == [] and clock.fire() == [0.0] and len(delivered) == 1
    batcher.close()


@pytest.mark.parametrize("batch", [800, 1600])
def test_batched_resampler_gives_the_same_signal(batch):
    """soxr rounds to int16 per block, so chunking moves samples by a unit or two, no more."""
    samples, _ = read_wav(FIXTURES / "en_human_person.wav", 8000)
    plain, held = StreamResampler(8000, 16000), StreamResampler(8000, 16000, batch=batch)
    a, b = [], []
    for i in range(0, samples.size, 160):
        a.append(plain.process(samples[i:i + 160]))
        b.append(held.process(samples[i:i + 160]))
    a.append(plain.process(samples[:0], last=True))
    b.append(held.process(samples[:0], last=True))
    x, y = np.concatenate(a).astype(int), np.concatenate(b).astype(int)
    assert x.size == y.size == 2 * samples.size
    assert np.abs(x - y).max() <= 2 and np.abs(x).max() > 1000
