"""Embedded English engine: pocketsphinx (US-English model from its wheel).

Two searches run over the same audio as it arrives: a JSGF grammar of the
language pack's sentences, and a free phone loop (allphone). A grammar forces
any sound into some sentence, so the confidence is how well the phones heard
by the free loop agree with the phones of the sentence the grammar chose
(1 - phone error rate, mapped onto [0, 1] so that DEFAULT threshold 0.6 sits
at the measured boundary). Out-of-domain speech gets a low score instead of
becoming a false "agent please". Decoders are pooled: loading one is slow.
"""

from __future__ import annotations

import threading

from pocketsphinx import Decoder, get_model_path

from voicebot.dialog.lang import LanguagePack
from voicebot.types import Transcript, Word

FRAME_S = 0.01
# Phone agreement at which the grammar result is trusted (maps to confidence 0.6),
# measured on the fixtures: in-grammar sentences 0.09-0.22, out-of-domain ≤ 0.06.
AGREEMENT_AT_THRESHOLD = 0.07
_NON_PHONES = {"SIL", "+SPN+", "+NSN+", "<s>", "</s>", "<sil>"}


def _edit_distance(a: list[str], b: list[str]) -> int:
    previous = list(range(len(b) + 1))
    for i, x in enumerate(a, 1):
        current = [i]
        for j, y in enumerate(b, 1):
            current.append(min(previous[j] + 1, current[j - 1] + 1, previous[j - 1] + (x != y)))
        previous = current
    return previous[-1]


def agreement_to_confidence(agreement: float) -> float:
    if agreement >= AGREEMENT_AT_THRESHOLD:
        return min(1.0, 0.6 + (agreement - AGREEMENT_AT_THRESHOLD) * 2.5)
    return max(0.0, 0.6 * (agreement + 0.3) / (AGREEMENT_AT_THRESHOLD + 0.3))


class _DecoderPair:
    def __init__(self, jsgf: str) -> None:
        self.grammar = Decoder(samprate=16000, loglevel="FATAL")
        self.grammar.add_jsgf_string("grammar", jsgf)
        self.grammar.activate_search("grammar")
        self.phones = Decoder(samprate=16000, loglevel="FATAL")
        self.phones.add_allphone_file("phones", get_model_path("en-us/en-us-phone.lm.bin"))
        self.phones.activate_search("phones")
        # Cepstral means carry over between utterances of a decoder; start each
        # utterance from the same values so a result does not depend on which
        # pooled decoder (and which earlier caller) it got.
        self.initial_cmn = (self.grammar.get_cmn(), self.phones.get_cmn())


class SphinxStream:
    """Buffers the utterance and decodes it whole in finish(): pocketsphinx's
    cepstral mean normalisation is far more reliable over a whole utterance
    than live from its first frame on 8 kHz telephone audio (measured: most
    short requests came out empty when decoded live). A 2 s utterance costs
    ~50-150 ms to decode on this machine."""

    def __init__(self, engine: SphinxEngine) -> None:
        self._engine = engine
        self._audio = bytearray()

    def accept(self, pcm: bytes) -> None:
        self._audio += pcm

    def finish(self) -> Transcript:
        if not self._audio:
            return Transcript("", 0.0)
        pair = self._engine.acquire()
        try:
            return self._result(pair, bytes(self._audio))
        finally:
            self._engine.release(pair)

    def _result(self, pair: _DecoderPair, audio: bytes) -> Transcript:
        for decoder, cmn in zip((pair.grammar, pair.phones), pair.initial_cmn, strict=True):
            decoder.set_cmn(cmn)
            decoder.start_utt()
            decoder.process_raw(audio, False, True)
            decoder.end_utt()
        hyp = pair.grammar.hyp()
        text = hyp.hypstr if hyp is not None else ""
        if text not in self._engine.sentences:  # no complete sentence: nothing usable heard
            return Transcript(text, 0.0)
        heard = [s.word for s in pair.phones.seg() if s.word not in _NON_PHONES]
        expected = [p for w in text.split() for p in (pair.grammar.lookup_word(w) or "").split()]
        agreement = 1.0 - _edit_distance(expected, heard) / max(1, len(expected))
        confidence = agreement_to_confidence(agreement)
        words = tuple(
            Word(s.word, confidence, s.start_frame * FRAME_S, (s.end_frame + 1) * FRAME_S)
            for s in pair.grammar.seg() if s.word not in _NON_PHONES
        )
        return Transcript(text, confidence, words)


class SphinxEngine:
    name = "pocketsphinx"
    sample_rate = 16000

    def __init__(self, pack: LanguagePack, decoders: int = 4) -> None:
        self.language = pack.code
        self.sentences = frozenset(pack.grammar)
        # Every sentence prefix is in the grammar too, so a caller cut off mid-sentence
        # still leaves the words heard (as a partial, zero-confidence result).
        prefixes = {" ".join(s.split()[:n]) for s in pack.grammar for n in range(1, len(s.split()) + 1)}
        alternatives = " | ".join(f"( {s} )" for s in sorted(prefixes))
        self._jsgf = f"#JSGF V1.0;\ngrammar voicebot;\npublic <request> = {alternatives};\n"
        # One decoder pair per recognition thread, built up front: building one
        # takes far longer than decoding an utterance, so doing it under load
        # (many callers finishing a sentence at once) would blow the ASR timeout.
        self._pool: list[_DecoderPair] = [_DecoderPair(self._jsgf) for _ in range(decoders)]
        self._lock = threading.Lock()
        self.created = decoders
        self.description = (f"pocketsphinx {get_model_path('en-us')} (bundled US English), "
                            f"grammar of {len(pack.grammar)} sentences + phone-loop rejection")

    def stream(self) -> SphinxStream:
        return SphinxStream(self)

    def acquire(self) -> _DecoderPair:
        with self._lock:
            if self._pool:
                return self._pool.pop()
            self.created += 1
        return _DecoderPair(self._jsgf)

    def release(self, pair: _DecoderPair) -> None:
        with self._lock:
            self._pool.append(pair)
