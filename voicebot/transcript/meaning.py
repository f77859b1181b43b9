"""How close a free-form transcript's meaning is to each of the flow's intents:
the best sentence similarity between the words and the intent's examples.

The text matcher finds intents by their key words, and a key word said in
another sense reads as the intent ("I'd like to order a birthday cake" holds
"order"); the whole sentence's meaning tells them apart. The examples come
from the flow as data (`Topics`); each set is encoded once and kept.
"""

from __future__ import annotations

import logging
import threading
from collections import OrderedDict
from dataclasses import replace

import numpy as np

from voicebot.transcript.sentences import SentenceEncoder
from voicebot.types import Topics, Transcript

KEPT_SETS = 64  # example sets kept encoded (a flow has a few per node)
log = logging.getLogger("voicebot.transcript")


class Meaning:
    def __init__(self, encoder: SentenceEncoder, languages: tuple[str, ...] = ("en",)) -> None:
        self.encoder, self.languages = encoder, languages
        self._sets: OrderedDict[tuple[str, ...], np.ndarray] = OrderedDict()
        self._lock = threading.Lock()  # the second opinion and its fallback ask from their own threads

    def closeness(self, text: str, topics: Topics) -> tuple[tuple[str, float], ...]:
        """(intent, best similarity of `text` to its examples) for each topic; () for no words."""
        topics = tuple((name, examples) for name, examples in topics if examples)
        if not text.strip() or not topics:
            return ()
        with self._lock:
            vector = self.encoder.encode([text])[0]
            return tuple((name, round(float((self._examples(examples) @ vector).max()), 3))
                         for name, examples in topics)

    def prepare(self, topic_sets: list[Topics]) -> None:
        """Encode these example sets now (at start-up, on a flow's reload), not on a caller's turn."""
        wanted = {examples for topics in topic_sets for _, examples in topics if examples}
        with self._lock:
            new = len(wanted - set(self._sets))
            for examples in wanted:
                self._examples(examples)
        log.info("sentence encoder: %d example sets of the flow ready (%d encoded now)", len(wanted), new)

    def annotate(self, heard: Transcript, topics: Topics) -> Transcript:
        return replace(heard, closeness=self.closeness(heard.text, topics))

    def _examples(self, examples: tuple[str, ...]) -> np.ndarray:
        found = self._sets.get(examples)
        if found is None:
            found = self._sets[examples] = self.encoder.encode(list(examples))
            if len(self._sets) > KEPT_SETS:
                self._sets.popitem(last=False)
        self._sets.move_to_end(examples)
        return found
