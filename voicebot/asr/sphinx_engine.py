"""Embedded English engine: pocketsphinx 5 with the US-English model of its wheel.

Two finite-state searches run over the same audio, chunk by chunk in accept():

- the *sentence* search: the language pack's grammar sentences, or nothing
  (silence and noise), or at a high price the first words of a sentence;
- the *phone loop*: any sequence of the 39 English phones, each phone costing
  PHONE_LOOP_PROB, i.e. "some speech, no particular words".

A grammar alone forces every sound into some sentence. The phone loop is the
alternative the grammar lacks: for a request that really is a grammar sentence
the sentence path scores about as well as the phone loop (often better, since
the words' pronunciations fit); for other speech, another language, mumbling
or noise the free loop fits far better. The confidence is the per-frame score
margin between the two paths, mapped through a logistic whose slope and offset
were fitted on benchmarks/asr_rejection.py (see docs/asr.md), so that the
default threshold 0.6 sits at the measured operating point.

Decoders are not thread-safe, take ~0.4 s to build and ~60 MB each set
(every pocketsphinx decoder loads its own copy of the acoustic model), so
sets are pooled: a stream takes a set after CMN_SECONDS of audio (or when
asked for a partial result) and gives it back in finish() (or when it is
garbage-collected unfinished). `pool_size` sets are built up front; `grow()`
builds more, up to `max_sets`, and the recognition worker calls it only while
it has no utterance open, so a burst of utterances finds sets ready and
memory is bounded by `max_sets`. When all sets are busy, a stream keeps buffering and
takes one as soon as one is free (catching up in one go); only a stream that
reaches finish() with none free builds an extra set, which is dropped again
when returned to a full pool.
"""

from __future__ import annotations

import math
import os
import tempfile
import threading
import weakref
from dataclasses import dataclass

import numpy as np
from pocketsphinx import Decoder, get_model_path

from voicebot.asr.sphinx_margin import FrameLevels, margin_over_loop
from voicebot.phrases import TemplateError, fsg_edges, parse, words
from voicebot.types import Partial, Transcript, Vocabulary, Word

SAMPLE_RATE = 16000  # the en-us model's filterbank reaches 6.8 kHz: it refuses 8 kHz
FRAME_S = 0.01
# Audio used to estimate the cepstral mean before decoding starts. Decoding
# runs at ~0.2x real time, so a short request's partial result comes up to
# ~0.3 s late while the stream catches up. Less was tried for that: the 40
# English fixtures' first utterances came out exactly right 24 times with 1 s,
# 23 with 0.8 s and 0.7 s, 16 with 0.5 s, and with 0.7-0.8 s the fixture
# suite's LibriVox sentence became a request for a person and a plain request
# fell under the 0.6 threshold; so it stays 1 s.
CMN_SECONDS = 1.0
_CMN_BYTES = int(CMN_SECONDS * SAMPLE_RATE) * 2
# Asked at a pause before CMN_SECONDS of audio (a short answer, "yes", "operator":
# the pause's own silence included), decoding starts on the mean of what there
# is, as finish() would, and only a whole phrase is reported: else such a turn
# could not end before the next probe (~400 ms of silence instead of 200).
# Anything else gives the decoders back (the stream buffers on as if never
# asked); a caller who goes on after a whole phrase is decoded again from the
# start on the mean of the first second. Either way what they say is read
# as it was without the early partial.
_SHORT_BYTES = int(0.5 * SAMPLE_RATE) * 2
PHONE_LOOP_PROB = 1e-3  # FSG probability of each phone of the free loop
# FSG probability of leaving a phrase after one of its first words, so a caller
# cut off mid-sentence leaves the words said (measured on today's grammar:
# 1e-15 let unfinished sentences beat whole ones, 1e-100 left nothing).
PREFIX_EXIT_PROB = 1e-195  # 1e-30 at the language weight 6.5 it was measured at; this search uses 1
PREFIX_MAX_CONFIDENCE = 0.3  # an unfinished phrase is never a request
NO_TEXT_BELOW = 0.2  # under this the sentence is a guess the loop clearly beats: no text
# Logistic map of the per-frame margin (sentence score - phone-loop score, in
# pocketsphinx log-base-1.0001 units per 10 ms frame) onto [0, 1]: margin
# MARGIN_AT_THRESHOLD gives THRESHOLD, each MARGIN_SCALE more or less moves
# the log-odds by one. Fitted by benchmarks/asr_rejection.py --fit: -4.4 with
# the loop scored every frame; scored every other frame (LOOP_DS) the loop's
# paths score lower, and the same fit puts the operating point 8.5 higher.
# The margin is now taken over a window (sphinx_margin.py) that a server's turn
# fills with its pre-roll and hangover, so the map stayed: over 105 turns of dev
# calls through a server the window's margin equalled the every-frame one in 84.
# asr_rejection.py's clips carry more silence (the synthesizer's own besides the
# pads) and read a median 1.0 lower over the window: a refit there would move it.
THRESHOLD = 0.6
MARGIN_AT_THRESHOLD = 4.1
MARGIN_SCALE = 2.0
# The phone loop computes its acoustic scores on every other frame (pocketsphinx
# `-ds 2`): 29 % less of its CPU, 14 % less of recognition's, with requests
# told from other speech as well (benchmarks/README.md, phone_loop.py).
LOOP_DS = 2

_PHONES = ("AA", "AE", "AH", "AO", "AW", "AY", "B", "CH", "D", "DH", "EH", "ER", "EY", "F", "G",
           "HH", "IH", "IY", "JH", "K", "L", "M", "N", "NG", "OW", "OY", "P", "R", "S", "SH", "T",
           "TH", "UH", "UW", "V", "W", "Y", "Z", "ZH")
_NOT_WORDS = {"<s>", "</s>", "<sil>", "(NULL)", "[NOISE]", "[SPEECH]", "+NSN+", "+SPN+"}
_WIDE_BEAMS = {"beam": 1e-80, "wbeam": 1e-60, "pbeam": 1e-80, "lw": 1.0}


def margin_to_confidence(margin: float, at_threshold: float = MARGIN_AT_THRESHOLD,
                         scale: float = MARGIN_SCALE) -> float:
    """Per-frame score margin → confidence in [0, 1] (THRESHOLD at `at_threshold`)."""
    if math.isnan(margin):
        return 0.0
    offset = math.log(THRESHOLD / (1.0 - THRESHOLD))
    z = (margin - at_threshold) / scale + offset
    if z < -40:
        return 0.0
    return 1.0 / (1.0 + math.exp(-z))


def _feat_params(cmn: str) -> str:
    """The model's feat.params with our two changes: no `-remove_noise` (its noise
    estimate carries over from one utterance to the next, so the same audio would
    decode differently depending on the previous caller) and the CMN mode. Python
    keyword arguments cannot override feat.params; a file can."""
    with open(os.path.join(get_model_path("en-us/en-us"), "feat.params")) as f:
        lines = [ln.split(None, 1) for ln in f.read().splitlines() if ln.strip()]
    params = {k: v.strip() for k, v in lines}
    params["-remove_noise"] = "no"
    params["-cmn"] = cmn
    return "".join(f"{k} {v}\n" for k, v in params.items())


def _decoder(feat_params: str, **config: object) -> Decoder:
    fd, path = tempfile.mkstemp(prefix="voicebot-feat-", suffix=".params")
    try:
        with os.fdopen(fd, "w") as f:
            f.write(feat_params)
        return Decoder(samprate=SAMPLE_RATE, loglevel="FATAL", lm=None, featparams=path, **config)
    finally:
        os.unlink(path)


def add_phone_words(decoder: Decoder) -> None:
    """The 39 phones as one-phone words (`phone_aa` ...), the phone loop's vocabulary."""
    for i, phone in enumerate(_PHONES):
        decoder.add_word(f"phone_{phone.lower()}", phone, i == len(_PHONES) - 1)


def phone_loop(feat_params: str, **config: object) -> Decoder:
    """A decoder searching the free phone loop (any phones, each at PHONE_LOOP_PROB):
    the rejection model. `config`: decoder settings (the engine's: ds=LOOP_DS)."""
    loop = _decoder(feat_params, bestpath=False, **config)
    add_phone_words(loop)
    edges: list[tuple[int, int, float] | tuple[int, int, float, str]] = [
        (0, 2, PHONE_LOOP_PROB, f"phone_{p.lower()}") for p in _PHONES]
    edges += [(2, 0, 1.0), (2, 1, 1.0)]
    loop.add_fsg("loop", loop.create_fsg("loop", 0, 1, edges))
    loop.activate_search("loop")
    return loop


def _sentence(decoder: Decoder) -> str:
    """The best path's words so far ("" for none, or the path of silence alone)."""
    hyp = decoder.hyp()
    if hyp is None or hyp.best_score <= 0.0:
        return ""
    return str(hyp.hypstr) if hyp.hypstr.strip() else ""


@dataclass
class _DecoderSet:
    sentences: Decoder
    loop: Decoder
    in_utterance: bool = False

    def start(self, cmn: str) -> None:
        for d in (self.sentences, self.loop):
            d.set_cmn(cmn)
            d.start_utt()
        self.in_utterance = True

    def feed(self, pcm: bytes) -> None:
        self.sentences.process_raw(pcm, False, False)
        self.loop.process_raw(pcm, False, False)

    def margin(self, levels: np.ndarray) -> float:
        return margin_over_loop(self.sentences, self.loop, levels)

    def end(self) -> None:
        if self.in_utterance:
            self.in_utterance = False
            self.sentences.end_utt()
            self.loop.end_utt()


class SphinxEngine:
    name = "pocketsphinx"

    def __init__(self, vocabulary: Vocabulary, sample_rate: int = SAMPLE_RATE, pool_size: int = 2,
                 max_sets: int = 0) -> None:
        self.pool_size = max(1, pool_size)
        self.max_sets = max(self.pool_size, max_sets)  # grow() builds up to this many
        if sample_rate != SAMPLE_RATE:
            raise ValueError(f"pocketsphinx's en-us model needs {SAMPLE_RATE} Hz audio, not "
                             f"{sample_rate} (resample 8 kHz line audio to 16 kHz)")
        if vocabulary.language != "en":
            raise ValueError(f"the embedded engine speaks English only, not {vocabulary.language!r}")
        self.language = vocabulary.language
        self.sample_rate = SAMPLE_RATE
        self._live = _feat_params("live")
        self._lock = threading.Lock()
        self._pool: list[_DecoderSet] = []
        self.created = 0  # decoder sets alive, pooled or in use
        self._cmn_lock = threading.Lock()
        self._cmn = _decoder(_feat_params("batch"))  # whole-chunk cepstral mean, shared
        self._cmn.add_jsgf_string("cmn", "#JSGF V1.0;\ngrammar cmn;\npublic <s> = yes;\n")
        self._cmn.activate_search("cmn")
        self.dropped: tuple[str, ...] = ()
        self._contexts = {c.name: self._phrases(c.phrases) for c in vocabulary.contexts}
        if not any(self._contexts.values()):
            raise ValueError("none of the flow's phrases can be spelled with the pocketsphinx dictionary")
        self.default_context = vocabulary.contexts[0].name
        self._graphs: dict[str, list] = {}  # type: ignore[type-arg]  # context -> transitions without exits
        self.sentences = frozenset(p for ps in self._contexts.values() for p in ps)  # templates
        with self._lock:
            self._pool = [self._build() for _ in range(max(1, pool_size))]
        vocab = set().union(*(words(parse(p)) for p in self.sentences))
        self.description = (
            f"pocketsphinx en-us ({get_model_path('en-us/en-us')}), grammar of the flow's phrase templates "
            f"({len(self.sentences)} templates / {len(vocab)} words in {len(self._contexts)} contexts) "
            f"+ phone-loop rejection, {SAMPLE_RATE} Hz, decoder pool {len(self._pool)}"
            + (f"; dropped (words not in the dictionary): {' | '.join(self.dropped)}" if self.dropped else "")
        )

    def _phrases(self, phrases: tuple[str, ...]) -> tuple[str, ...]:
        """The templates every word of which the dictionary can pronounce; others are dropped."""
        kept, dropped = [], []
        for phrase in dict.fromkeys(p.strip() for p in phrases):
            try:
                known = all(self._cmn.lookup_word(w) is not None for w in words(parse(phrase)))
            except TemplateError:
                known = False
            if phrase and known:
                kept.append(phrase)
            elif phrase:
                dropped.append(phrase)
        self.dropped = tuple(dict.fromkeys(self.dropped + tuple(dropped)))
        return tuple(kept)

    def sentence_edges(self, name: str) -> tuple[list, int]:  # type: ignore[type-arg]
        """The context's sentence graph (start 0, final 1) with the exits after a
        phrase's first words, and the first state number it leaves unused."""
        transitions: list = [(0, 1, 1.0)]  # type: ignore[type-arg]  # nothing said (silence, noise)
        state = 2
        # A template's `*` adds nothing here: free phones inside the grammar are the
        # rejection model itself, and paths made of them fit any speech (measured).
        for template in self._contexts[name]:
            edges, state = fsg_edges(parse(template), 0, 1, state)
            transitions += edges
        self._graphs[name] = transitions
        exits = [(s, 1, PREFIX_EXIT_PROB) for s in range(2, state)]
        return transitions + exits, state

    def _fsg(self, decoder: Decoder, name: str) -> object:
        return decoder.create_fsg(name, 0, 1, self.sentence_edges(name)[0])

    def stream(self, context: str = "") -> SphinxStream:
        return SphinxStream(self, context if context in self._contexts else self.default_context)

    # --- pool ----------------------------------------------------------------
    def _build(self) -> _DecoderSet:
        searches = _decoder(self._live, bestpath=False, **_WIDE_BEAMS)
        for name in self._contexts:
            searches.add_fsg(name, self._fsg(searches, name))
        searches.activate_search(self.default_context)
        self.created += 1
        return _DecoderSet(searches, phone_loop(self._live, ds=LOOP_DS))

    def acquire(self, build: bool = True) -> _DecoderSet | None:
        """A free decoder set; with build=False, None when all are busy."""
        with self._lock:
            if self._pool:
                return self._pool.pop()
            return self._build() if build else None  # under the lock: `created` stays exact

    def release(self, decoders: _DecoderSet) -> None:
        try:
            decoders.end()
        except RuntimeError:  # a decoder in a bad state is dropped, not reused
            with self._lock:
                self.created -= 1
            return
        with self._lock:
            if len(self._pool) < self.pool_size:
                self._pool.append(decoders)
            else:
                self.created -= 1

    def grow(self) -> bool:
        """Build one more pooled set if fewer than `max_sets` exist; False when
        there are enough. The worker calls it while no audio waits, so that a
        burst of utterances finds sets ready instead of building them."""
        with self._lock:
            if self.created >= self.max_sets:
                return False
            self._pool.append(self._build())
            self.pool_size = self.max_sets  # every set built is kept for the next burst
            return True

    @property
    def idle(self) -> int:
        with self._lock:
            return len(self._pool)

    def estimate_cmn(self, pcm: bytes) -> str:
        """Cepstral mean of `pcm` (batch CMN over the chunk), as pocketsphinx's string."""
        with self._cmn_lock:
            self._cmn.start_utt()
            self._cmn.process_raw(pcm, True, True)
            self._cmn.end_utt()
            cmn: str = self._cmn.get_cmn()
            return cmn


def _accepts(transitions: list, words: list[str]) -> bool:  # type: ignore[type-arg]
    """Whether the graph (start 0, final 1) reads exactly these words."""
    step: dict[int, list[tuple[int, str | None]]] = {}
    for t in transitions:
        step.setdefault(t[0], []).append((t[1], t[3] if len(t) == 4 else None))

    def closure(states: set[int]) -> set[int]:
        todo, seen = list(states), set(states)
        while todo:
            for target, word in step.get(todo.pop(), ()):
                if word is None and target not in seen:
                    seen.add(target)
                    todo.append(target)
        return seen

    states = closure({0})
    for word in words:
        states = closure({target for s in states for target, w in step.get(s, ()) if w == word})
        if not states:
            return False
    return 1 in states


class SphinxStream:
    """One utterance. accept() decodes as audio arrives (after the first
    CMN_SECONDS, which set the cepstral mean); finish() only closes the searches."""

    def __init__(self, engine: SphinxEngine, context: str) -> None:
        self._engine = engine
        self._context = context
        self._pending = bytearray()
        self._decoders: _DecoderSet | None = None
        self._finalizer: weakref.finalize[[_DecoderSet], SphinxStream] | None = None
        self._done = False
        self._early: bytearray | None = None  # the audio so far, while decoded on a short mean
        self.margin: float | None = None  # per-frame score margin of the last result
        self._levels = FrameLevels()

    def accept(self, pcm: bytes) -> None:
        if self._done:
            raise RuntimeError("accept() after finish()")
        if not pcm:
            return
        self._pending += pcm
        self._levels.add(pcm)
        if self._early is not None:
            self._early += pcm
            if len(self._early) >= _CMN_BYTES:
                self._decode_again()
        if self._decoders is None:
            if len(self._pending) < _CMN_BYTES:
                return
            if not self._begin(build=False):
                return  # every set is busy: keep buffering
        self._feed()

    def _give_back_early(self) -> None:
        """No whole phrase at the early pause: the stream goes back to buffering
        as if never asked (decoding starts at CMN_SECONDS, on that mean)."""
        assert self._early is not None
        self._pending, self._early = self._early, None
        self._release()

    def _release(self) -> None:
        """The decoder set goes back to the engine's pool."""
        decoders, self._decoders = self._decoders, None
        if self._finalizer is not None:
            self._finalizer.detach()
        if decoders is not None:
            self._engine.release(decoders)

    def _decode_again(self) -> None:
        """The caller went on after a whole phrase at an early pause: the utterance
        from its start, on the mean of its first second, as if never asked."""
        decoders, audio, self._early = self._decoders, self._early, None
        assert decoders is not None and audio is not None
        decoders.end()
        decoders.start(self._engine.estimate_cmn(bytes(audio[:_CMN_BYTES])))
        self._pending = audio

    def finish(self) -> Transcript:
        if self._done:
            raise RuntimeError("finish() called twice")
        self._done = True
        if self._decoders is None:
            if len(self._pending) < 2:
                return Transcript("", 0.0)
            self._begin(build=True)
        self._feed(final=True)
        decoders = self._decoders
        assert decoders is not None
        try:
            decoders.end()
            return self._result(decoders)
        finally:
            self._release()

    def partial(self) -> Partial:
        """The best path so far, and whether it is a whole phrase of the context.
        Before CMN_SECONDS of audio (at least _SHORT_BYTES' worth), decoding starts
        on the mean of what there is and only a whole phrase is an opinion."""
        if self._done:
            raise RuntimeError("partial() after finish()")
        if self._decoders is None:
            early = len(self._pending) < _CMN_BYTES
            if len(self._pending) < _SHORT_BYTES or not self._begin(build=False):
                return Partial("", 0.0, False)  # too little audio for the mean, or every set busy: no opinion
            self._early = bytearray(self._pending) if early else None
        self._feed()
        decoders = self._decoders
        assert decoders is not None
        text = _sentence(decoders.sentences)
        whole = bool(text) and _accepts(self._engine._graphs[self._context], text.split())
        if self._early is not None and not whole:
            self._give_back_early()  # too early for anything but a whole phrase
            return Partial("", 0.0, False)
        if not text:
            return Partial("", 0.0, False, decoded=True)
        return Partial(text, round(margin_to_confidence(decoders.margin(self._levels.all())), 4), whole, decoded=True)

    def _begin(self, build: bool) -> bool:
        engine = self._engine
        decoders = engine.acquire(build)
        if decoders is None:
            return False
        try:
            cmn = engine.estimate_cmn(bytes(self._pending[:_CMN_BYTES]))
            if decoders.sentences.current_search() != self._context:
                decoders.sentences.activate_search(self._context)
            decoders.start(cmn)
        except Exception:
            engine.release(decoders)
            raise
        self._decoders = decoders
        # An utterance abandoned without finish() (call hung up, task cancelled)
        # still gives its decoders back when the stream is collected.
        self._finalizer = weakref.finalize(self, engine.release, decoders)
        return True

    def _feed(self, final: bool = False) -> None:
        usable = len(self._pending) if final else len(self._pending) & ~1
        usable &= ~1  # whole 16-bit samples only
        if usable and self._decoders is not None:
            self._decoders.feed(bytes(self._pending[:usable]))
            del self._pending[:usable]

    def _result(self, decoders: _DecoderSet) -> Transcript:
        text = _sentence(decoders.sentences)
        if not text:
            return Transcript("", 0.0)
        margin = self.margin = decoders.margin(self._levels.all())
        confidence = margin_to_confidence(margin)
        whole = _accepts(self._engine._graphs[self._context], text.split())
        if not whole:  # the caller stopped mid-phrase: keep the words, never as a request
            confidence = min(confidence, PREFIX_MAX_CONFIDENCE)
        if not text or (whole and confidence < NO_TEXT_BELOW):
            return Transcript("", round(confidence, 4))
        words = tuple(
            Word(seg.word.split("(")[0], round(confidence, 4), seg.start_frame * FRAME_S,
                 (seg.end_frame + 1) * FRAME_S)
            for seg in decoders.sentences.seg()
            if seg.word not in _NOT_WORDS
        )
        return Transcript(text, round(confidence, 4), words)
