"""The recognition worker pool: same results as in-process, and a dead or
broken worker becomes an EngineError (a handoff), never a hang."""

from __future__ import annotations

import gc
import os
import signal

import pytest

from voicebot.asr.loader import load_engine
from voicebot.asr.workers import WorkerPoolEngine
from voicebot.audio.resample import resample
from voicebot.audio.wav import read_wav
from voicebot.dialog.compile import default_vocabulary
from voicebot.errors import ConfigError, EngineError

from .conftest import FIXTURES

pytestmark = pytest.mark.engine


def utterance(name: str = "en_human_person.wav") -> bytes:
    samples, rate = read_wav(FIXTURES / name)
    return resample(samples[int(0.7 * rate): int(3.2 * rate)], rate, 16000).astype("<i2").tobytes()


def recognise(engine, pcm: bytes):
    stream = engine.stream()
    for i in range(0, len(pcm), 3200):
        stream.accept(pcm[i:i + 3200])
    return stream.finish()


@pytest.fixture(scope="module")
def pool():
    engine = WorkerPoolEngine(None, default_vocabulary("en"), workers=2)
    yield engine
    engine.close()


def test_pool_gives_the_in_process_result(pool):
    pcm = utterance()
    local = recognise(load_engine(None, default_vocabulary("en")), pcm)
    remote = recognise(pool, pcm)
    assert remote.text == local.text == "i want to speak to a person"
    assert remote.confidence == pytest.approx(local.confidence)
    assert [w.text for w in remote.words] == [w.text for w in local.words]
    assert pool.name == "pocketsphinx" and pool.sample_rate == 16000
    assert "2 worker processes" in pool.description


def test_streams_spread_over_workers_and_abandoned_ones_are_released(pool):
    streams = [pool.stream() for _ in range(4)]
    assert sorted(w.open_streams for w in pool._workers) == [2, 2]
    del streams
    gc.collect()
    assert [w.open_streams for w in pool._workers] == [0, 0]


def test_a_killed_worker_fails_its_utterances_and_is_replaced():
    engine = WorkerPoolEngine(None, default_vocabulary("en"), workers=1)
    try:
        stream = engine.stream()
        stream.accept(utterance()[:32000])
        os.kill(engine.pids[0], signal.SIGKILL)
        with pytest.raises(EngineError):
            stream.finish()
        assert recognise(engine, utterance()).text == "i want to speak to a person"
    finally:
        engine.close()


def test_a_model_that_cannot_load_is_a_config_error(tmp_path):
    with pytest.raises(ConfigError) as err:
        WorkerPoolEngine(str(tmp_path / "no-such-model"), default_vocabulary("en"), workers=1)
    assert err.value.key == "VOICEBOT_MODEL"


def test_a_worker_that_stops_answering_is_killed_and_replaced():
    """Alive but not answering (SIGSTOP): the watchdog's ping goes unanswered,
    the worker is killed, its utterance fails (the call goes to a person) and
    the next utterance gets a new worker."""
    engine = WorkerPoolEngine(None, default_vocabulary("en"), workers=1, hang_after_s=1.0)
    try:
        stream = engine.stream()
        stream.accept(utterance()[:32000])
        hung = engine.pids[0]
        os.kill(hung, signal.SIGSTOP)
        with pytest.raises(EngineError, match="process (died|is gone)"):  # not the 60 s give-up
            stream.finish()
        assert engine.hung == 1
        assert recognise(engine, utterance()).text == "i want to speak to a person"
        assert engine.pids[0] != hung
    finally:
        engine.close()


def test_partial_results_say_whether_a_whole_phrase_was_heard(pool):
    pcm = utterance()
    stream = pool.stream("open")
    stream.accept(pcm[: int(1.4 * 32000)])  # "i want to speak ..." not finished yet
    early = stream.partial()
    stream.accept(pcm[int(1.4 * 32000):])
    late = stream.partial()
    assert early.text and not early.whole and early.decoded  # through the worker's pipe too
    assert late.text == "i want to speak to a person" and late.whole and late.confidence > 0.5
    assert stream.finish().text == "i want to speak to a person"


def test_sets_grow_while_idle_up_to_the_bound():
    from voicebot.asr.sphinx_engine import SphinxEngine

    engine = SphinxEngine(default_vocabulary("en"), pool_size=1, max_sets=3)
    grown = 0
    while engine.grow():
        grown += 1
    assert grown == 2 and engine.created == 3 and engine.idle == 3
    streams = [engine.stream() for _ in range(3)]
    for s in streams:
        s.accept(utterance()[:40000])
    assert engine.idle == 0  # every utterance found a set ready
    for s in streams:
        s.finish()
    assert engine.idle == 3 and engine.created == 3  # kept for the next burst


def test_a_silent_worker_that_is_working_is_busy_not_hung():
    """The watchdog tells a worker decoding a backlog (using CPU) from a frozen one."""
    import subprocess
    import sys
    import time
    from types import SimpleNamespace

    from voicebot.asr.workers import _busy, _cpu_seconds

    spinning = subprocess.Popen([sys.executable, "-c", "while True: pass"])
    frozen = subprocess.Popen([sys.executable, "-c", "import time; print('up', flush=True); time.sleep(60)"],
                              stdout=subprocess.PIPE)
    try:
        assert frozen.stdout is not None and frozen.stdout.readline() == b"up\n"  # its start-up CPU is spent
        workers = {p: SimpleNamespace(process=p, cpu_at_ping=_cpu_seconds(p.pid)) for p in (spinning, frozen)}
        start = time.monotonic()
        while _cpu_seconds(spinning.pid) - workers[spinning].cpu_at_ping < 0.3:  # bounded by the test timeout
            time.sleep(0.05)
        silent = time.monotonic() - start
        assert _busy(workers[spinning], silent, hang_after_s=silent)
        assert not _busy(workers[frozen], silent, hang_after_s=silent)
        assert not _busy(workers[spinning], 4 * silent, hang_after_s=silent)  # busy too long: hung
    finally:
        for p in (spinning, frozen):
            p.kill()
            p.wait()
