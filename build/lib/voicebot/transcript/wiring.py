"""Starting the free-form pass from the settings (called by the app at start-up)."""

from __future__ import annotations

import asyncio
import logging
from pathlib import Path

from voicebot.call.events import CallEventBus
from voicebot.config import Settings
from voicebot.staff.service import StaffDesk
from voicebot.storage.base import CallStore
from voicebot.transcript.desk import DeskSink
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
