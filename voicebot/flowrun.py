"""The flow at run time: load it, build each language's recogniser from it,
render its prompts, and reload it on SIGHUP without dropping a call.

A reload builds everything new beside the old (recogniser processes only for
languages whose vocabulary changed) and swaps it in at once: calls already
up keep the flow, recognisers and prompts they started with; the old
recognisers stop once the last of those calls has ended. A flow that fails
its checks is refused with the same messages as at start, and the running
flow stays.
"""

from __future__ import annotations

import asyncio
import logging
import os
from concurrent.futures import Executor
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from voicebot.asr.base import SpeechEngine
from voicebot.asr.runner import AsrRunner
from voicebot.asr.workers import WorkerPoolEngine
from voicebot.call.registry import CallRegistry
from voicebot.call.session import CallServices
from voicebot.config import Settings
from voicebot.dialog.compile import vocabulary
from voicebot.dialog.flow import DEFAULT_FLOW, Flow, FlowError
from voicebot.dialog.flowcheck import load_checked
from voicebot.dialog.lang import SYSTEM_PROMPTS
from voicebot.dialog.question import flow_topics
from voicebot.dialog.varied import each_variant
from voicebot.errors import ConfigError
from voicebot.tts.prompts import PromptCache
from voicebot.types import Vocabulary

log = logging.getLogger("voicebot")
LINE_RATES = (8000, 16000)


def flow_path(settings: Settings) -> Path:
    return Path(settings.flow) if settings.flow else DEFAULT_FLOW


def load_settings_flow(settings: Settings) -> Flow:
    """The configured flow, checked; ConfigError naming VOICEBOT_FLOW with every problem."""
    try:
        flow = load_checked(flow_path(settings))
    except FlowError as exc:
        raise ConfigError("flow", f"the flow has problems:\n{exc}") from None
    mapped = [name for name, node in flow.nodes.items() if settings.opt_out_key in node.dtmf]
    if settings.opt_out_key and mapped:
        raise ConfigError("opt_out_key", f"{settings.opt_out_key} opts the caller out of the assistant "
                          f"(the disclosure says so), but the flow's {', '.join(mapped)} map it: "
                          "choose another key for either")
    if settings.language not in flow.languages:
        raise ConfigError("language", f"{settings.language!r} is not one of the flow's languages "
                          f"({', '.join(flow.languages)})")
    return flow


def vocabularies(settings: Settings, flow: Flow) -> dict[str, Vocabulary]:
    """One vocabulary per language the server recognises and the flow speaks."""
    return {code: vocabulary(flow, code)
            for code in settings.language_models() if code in flow.languages}


def start_recognisers(settings: Settings, vocab: dict[str, Vocabulary],
                      reuse: dict[str, tuple[Vocabulary, SpeechEngine]] | None = None) -> dict[str, SpeechEngine]:
    """Blocking (run it on an executor): a worker pool per language, or the
    running one when its vocabulary is unchanged."""
    workers = settings.asr_workers or os.cpu_count() or 1
    models = settings.language_models()
    engines: dict[str, SpeechEngine] = {}
    for code, vocab_of in vocab.items():
        old = (reuse or {}).get(code)
        if old is not None and old[0] == vocab_of:
            engines[code] = old[1]
        else:
            engines[code] = WorkerPoolEngine(models[code] or None, vocab_of, workers,
                                             decoder_sets=settings.asr_decoder_sets,
                                             hang_after_s=settings.asr_hang_s)
    return engines


def prompt_texts(settings: Settings, flow: Flow, language: str) -> list[str]:
    """Every fixed text the flow, or any variant of its experiments, may say in
    `language` (templates render on demand)."""
    texts = []
    for each in [flow, *(varied for _, _, varied in each_variant(flow))]:
        texts += _fixed_texts(settings, each, language)
    return list(dict.fromkeys(texts))


def _fixed_texts(settings: Settings, flow: Flow, language: str) -> list[str]:
    names = list(dict.fromkeys([*SYSTEM_PROMPTS, *flow.prompts]))
    texts = [settings.disclosure_text or flow.disclosure(language, settings.opt_out_key)]
    for name in names:
        if name in ("disclosure", "opt_out_key") or name.startswith("human_unavailable"):
            continue
        try:
            text = flow.prompt(name, language)
        except KeyError:
            continue
        if "{" not in text and (name != "recording_consent" or settings.recording != "off"):
            texts.append(text)
    return list(dict.fromkeys(texts))


async def render_prompts(settings: Settings, flow: Flow, prompts: PromptCache, languages: list[str]) -> int:
    count = 0
    for code in languages:
        texts = prompt_texts(settings, flow, code)
        await prompts.prerender(flow.voice(code), texts, LINE_RATES)
        count += len(texts)
    return count


@dataclass(frozen=True)
class Speech:
    """What a flow needs to be spoken and heard: per language, its vocabulary and
    recogniser; its prompts are rendered into the shared cache."""

    vocab: dict[str, Vocabulary]
    runners: dict[str, AsrRunner]
    prompts_rendered: int


async def build_speech(settings: Settings, flow: Flow, prompts: PromptCache, executor: Executor,
                       running: Speech | None = None, engine: SpeechEngine | None = None) -> Speech:
    """Recognisers for `flow` (reusing `running`'s where a language's vocabulary is
    unchanged; `engine`: tests, one given engine for the default language) and its prompts."""
    vocab = vocabularies(settings, flow)
    if engine is not None:
        engines = {settings.language: engine}
    else:
        reuse = {code: (running.vocab[code], runner.engine) for code, runner in running.runners.items()
                 if code in running.vocab} if running is not None else None
        engines = await asyncio.get_running_loop().run_in_executor(
            executor, start_recognisers, settings, vocab, reuse)
    count = await render_prompts(settings, flow, prompts, list(engines))
    old = running.runners if running is not None else {}
    runners = {code: old[code] if code in old and old[code].engine is each
               else AsrRunner(each, executor, settings.asr_timeout_s) for code, each in engines.items()}
    return Speech(vocab, runners, count)


class FlowReloader:
    """SIGHUP: load, check, build and swap; old recognisers close when their calls end."""

    def __init__(self, settings: Settings, registry: CallRegistry, executor: Executor) -> None:
        self.settings, self.registry, self.executor = settings, registry, executor
        self.speech: Speech | None = None  # what the running flow was built into
        self._tasks: set[asyncio.Task[Any]] = set()  # reloads and retirements
        self.reloads = 0  # reloads that took effect

    def request(self) -> None:
        task = asyncio.get_running_loop().create_task(self.reload(), name="flow-reload")
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def reload(self) -> bool:
        services = self.registry.services
        if services is None:
            return False
        loop = asyncio.get_running_loop()
        try:
            flow = await loop.run_in_executor(self.executor, load_settings_flow, self.settings)
        except ConfigError as exc:
            log.error("flow reload refused, keeping the running flow: %s", exc)
            return False
        opinion = services.opinion
        if opinion is not None and opinion.meaning is not None:
            topics = flow_topics(flow, self.settings.language)
            await loop.run_in_executor(self.executor, opinion.meaning.prepare, topics)
        running = self.speech or Speech({}, services.recognisers, 0)
        speech = await build_speech(self.settings, flow, services.prompts, self.executor, running)
        runners = speech.runners
        self.registry.services = replace(services, flow=flow, asr=runners[self.settings.language],
                                         recognisers=runners)
        self.speech = speech
        self.reloads += 1
        log.info("flow reloaded from %s: %d nodes, languages %s", flow.source, len(flow.nodes),
                 ", ".join(runners))
        retired = [r.engine for code, r in services.recognisers.items() if runners.get(code) is not r]
        if retired:
            self._retire(services, retired)
        return True

    def _retire(self, old: CallServices, engines: list[SpeechEngine]) -> None:
        async def when_idle() -> None:
            while any(s.services is old for s in self.registry.sessions.values()):
                await self.registry.changed()
            for engine in engines:
                if isinstance(engine, WorkerPoolEngine):
                    await asyncio.get_running_loop().run_in_executor(None, engine.close)

        task = asyncio.get_running_loop().create_task(when_idle(), name="retire-recognisers")
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def close(self) -> None:
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
