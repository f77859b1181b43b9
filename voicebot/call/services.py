"""The per-process parts every call shares, built once by the app."""

from __future__ import annotations

from dataclasses import dataclass, field

from voicebot.asr.runner import AsrRunner
from voicebot.audio.batch import FrameBatcher
from voicebot.call.lookup import LookupClient
from voicebot.call.recording import AudioRecorder
from voicebot.config import Settings
from voicebot.dialog.flow import Flow
from voicebot.events import CallEventBus
from voicebot.storage.base import CallStore
from voicebot.transcript.opinion import SecondOpinion
from voicebot.transcript.service import TranscriptService
from voicebot.tts.prompts import PromptCache


@dataclass
class CallServices:
    """Per-process parts every call shares; built once by the app."""

    settings: Settings
    asr: AsrRunner  # the default language's recogniser
    prompts: PromptCache
    store: CallStore
    flow: Flow  # swapped whole on reload; a call keeps the flow it started with
    events: CallEventBus = field(default_factory=CallEventBus)
    frames: FrameBatcher | None = None  # VAD front end shared by all calls (None: per call)
    transcripts: TranscriptService | None = None  # background free-form pass (None: off)
    recognisers: dict[str, AsrRunner] = field(default_factory=dict)  # language -> recogniser
    lookups: LookupClient | None = None  # a flow's lookup nodes
    opinion: SecondOpinion | None = None  # a free-form engine asked when the grammar is unsure
    fallback: SecondOpinion | None = None  # a larger one, asked when `opinion` leaves a turn not understood
    recordings: AudioRecorder | None = None  # the caller's audio, with their consent (None: off)

    def recogniser(self, language: str) -> AsrRunner:
        return self.recognisers.get(language, self.asr)

    @property
    def languages(self) -> tuple[str, ...]:
        """The flow's languages this server has a recogniser for."""
        have = set(self.recognisers) | {self.asr.engine.language}
        return tuple(code for code in self.flow.languages if code in have)
