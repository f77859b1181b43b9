"""Starting the free-form pass from the settings (called by the app at start-up)."""

from __future__ import annotations

import asyncio
import logging
from pathlib import Path

from voicebot.asr.models import ModelError
from voicebot.config import Settings
from voicebot.errors import ConfigError, EngineError
from voicebot.events import CallEventBus
from voicebot.staff.service import StaffDesk
from voicebot.storage.base import CallStore
from voicebot.transcript.catalog import SENTENCE_MODELS, resolve_encoder
from voicebot.transcript.desk import DeskSink
from voicebot.transcript.meaning import Meaning
from voicebot.transcript.opinion import SecondOpinion
from voicebot.transcript.sentences import SentenceEncoder
from voicebot.transcript.service import TranscriptService
from voicebot.transcript.worker import ProcessTranscriber

log = logging.getLogger("voicebot.transcript")
MODELS_DIR = Path("models")


async def start_transcripts(settings: Settings, store: CallStore, desk: StaffDesk,
                            events: CallEventBus) -> TranscriptService | None:
    """None while VOICEBOT_TRANSCRIPT_ENGINE is off; a bad model is a ConfigError here,
    at start-up, exactly as for the decision engine."""
    if settings.transcript_engine == "off":
        return None

    def spawn() -> list[ProcessTranscriber]:
        started: list[ProcessTranscriber] = []
        try:
            for _ in range(settings.transcript_workers):
                started.append(ProcessTranscriber(settings.transcript_engine,
                                                  settings.transcript_model, settings.language,
                                                  MODELS_DIR))
        except BaseException:
            for t in started:
                t.close()
            raise
        return started

    transcribers = await asyncio.get_running_loop().run_in_executor(None, spawn)
    service = TranscriptService(list(transcribers), DeskSink(store, desk),
                                settings.transcript_calls, settings.transcript_queue,
                                settings.language)
    service.start()
    events.subscribe(service.on_call_event)
    log.info("free-form transcripts: %s", service.description)
    return service


FALLBACK_MODEL = "whisper-base"  # the second opinion's fallback under `auto`
ENGLISH_OPINION = "whisper-tiny.en"  # an English-only model: faster, and better on English


def opinion_model(settings: Settings) -> str:
    """The second opinion's model: under `auto` tiny.en for English calls and the
    multilingual base for other languages (measured on espeak-ng Korean: it writes the
    person-word of 14 in 28 requests for a person and of none of 22 unrelated sentences)."""
    choice = settings.second_opinion_model.strip()
    if choice != "auto":
        return choice
    return ENGLISH_OPINION if settings.language == "en" else FALLBACK_MODEL


async def start_second_opinion(settings: Settings) -> SecondOpinion | None:
    """The free-form engine the calls ask when the grammar is unsure. With `auto`
    it is Whisper when installed (`pip install 'voicebot[whisper]'` and a model),
    else off; with `whisper` a missing engine or model stops the start."""
    mode = settings.second_opinion
    if mode == "off":
        return None
    try:
        opinion = await _start_opinion(settings, opinion_model(settings))
    except (ConfigError, EngineError) as exc:
        if mode == "whisper":
            raise ConfigError("second_opinion_model", str(exc).split(": ", 1)[-1]) from None
        log.info("no second opinion on callers' answers (%s); for it: pip install "
                 "'voicebot[whisper]' and a Whisper model", str(exc).split(": ", 1)[-1])
        return None
    log.info("second opinion on callers' answers: %s", opinion.description)
    return opinion


async def start_fallback_opinion(settings: Settings, opinion: SecondOpinion | None) -> SecondOpinion | None:
    """A larger model asked when the second opinion (`opinion`) left a turn not
    understood. `auto`: whisper-base when installed, else none; a model named
    outright must load."""
    choice = settings.second_opinion_fallback.strip()
    if opinion is None or choice == "off":
        return None
    model = FALLBACK_MODEL if choice == "auto" else choice
    if model == opinion_model(settings):
        return None  # the second opinion is that model already
    try:
        fallback = await _start_opinion(settings, model)
    except (ConfigError, EngineError) as exc:
        if choice != "auto":
            raise ConfigError("second_opinion_fallback", str(exc).split(": ", 1)[-1]) from None
        log.info("no fallback for the second opinion (%s); for it: voicebot models fetch %s", exc, model)
        return None
    log.info("fallback when the second opinion leaves a turn not understood: %s", fallback.description)
    return fallback


ENCODER = "minilm-l6"  # the sentence encoder under `auto`


async def start_meaning(settings: Settings, *opinions: SecondOpinion | None) -> Meaning | None:
    """The sentence encoder, given to the opinions whose language it serves (English:
    none is loaded for a Korean server). `auto`: minilm-l6 when installed, else none;
    a model named outright must load."""
    choice = settings.meaning_model.strip()
    languages = SENTENCE_MODELS[ENCODER].languages
    asked = [o for o in opinions if o is not None and o.language in languages]
    if choice == "off" or not asked:
        return None
    try:
        path = resolve_encoder(ENCODER if choice == "auto" else choice, MODELS_DIR)
        encoder = await asyncio.to_thread(SentenceEncoder, path)
    except (ModelError, OSError, ValueError, KeyError, ImportError) as exc:
        if choice != "auto":
            raise ConfigError("meaning_model", str(exc)) from None
        log.info("no sentence encoder for the second opinion's words (%s); for it: "
                 "voicebot models fetch %s", exc, ENCODER)
        return None
    meaning = Meaning(encoder, languages)
    for opinion in asked:
        opinion.meaning = meaning
    log.info("the second opinion's words are compared with the flow's examples (%s)", path.name)
    return meaning


async def _start_opinion(settings: Settings, model: str) -> SecondOpinion:
    def spawn() -> ProcessTranscriber:  # normal priority: the caller waits for its answer
        return ProcessTranscriber("whisper", model, settings.language, MODELS_DIR,
                                  settings.second_opinion_threads, max(60.0, settings.second_opinion_timeout_s * 4),
                                  nice=0, beam_size=1)  # greedy: the caller waits for it

    loop = asyncio.get_running_loop()
    started = await asyncio.gather(*(loop.run_in_executor(None, spawn)
                                     for _ in range(settings.second_opinion_workers)), return_exceptions=True)
    copies = [t for t in started if not isinstance(t, BaseException)]
    failure = next((e for e in started if isinstance(e, BaseException)), None)
    if failure is not None:
        for copy in copies:  # none is left running behind a start that failed
            await asyncio.to_thread(copy.close)
        raise failure
    return SecondOpinion(copies[0], settings.language, settings.second_opinion_timeout_s,
                         max_batch=settings.second_opinion_batch, more=tuple(copies[1:]))
