"""Vosk engine: one `vosk.Model` per process, one `KaldiRecognizer` per utterance.

Grammar mode (the language pack has sentences and the model has a lookahead
graph, graph/HCLr.fst + Gr.fst): the recogniser gets the sentences as its
phrase list. Vosk turns a phrase list into a *bigram* of its words, so it may
output any mixture of them ("를 어요 연결해 주세요"); that free mixture is the
rejection model here. The recogniser returns its N best paths with their
scores; the best path that is exactly one of the sentences is the answer, and
the confidence is the score margin between it and the best path of all —
the same idea as the pocketsphinx engine's sentence-vs-phone-loop margin, mapped
through the same kind of logistic so that the default threshold 0.6 sits at the
operating point measured by benchmarks/asr_rejection.py. When no sentence is
among the N best, the confidence is capped low: the audio did not sound like
any request. The N best come out of the lattice, so the model is loaded with a
lattice beam of at least LATTICE_BEAM (the small models ship with 2.0, which
leaves few alternatives): a throw-away directory of links to the model with
its own conf/model.conf.

Free mode (no sentences, or a model with a static HCLG graph that cannot take
a runtime grammar): plain decoding with Vosk's word confidences; the utterance
confidence is the lowest word confidence.

Telephone audio reaches a 16 kHz model with nothing above 3.4 kHz, which the
model never saw in training (measured on espeak-ng Korean at one level: an
exact phrase in 2 of 40 requests). A faint noise floor above 3.8 kHz makes
that band look like a quiet room instead of digital silence (17 of 40). Its
level follows the caller's: 50 dB under the loudest 20 ms so far, at least
-66 dBFS (over three speech levels: 38 of 120 exact, against 31 with a fixed
-60 dBFS floor).
"""

from __future__ import annotations

import json
import math
import shutil
import tempfile
from pathlib import Path
from typing import Any

import numpy as np
import vosk

from voicebot.phrases import TemplateError, expand
from voicebot.types import Partial, Transcript, Vocabulary, Word, normalise

ALTERNATIVES = 30  # N-best paths asked of the recogniser
LATTICE_BEAM = 5.0
BAND_FILL_DBFS = -66.0  # floor of the high-band fill ...
BAND_FILL_BELOW_PEAK_DB = 50.0  # ... plus this far below the loudest 20 ms of speech so far
BAND_FILL_FROM_HZ = 3800.0
NO_SENTENCE_MAX_CONFIDENCE = 0.3  # no grammar sentence among the N best
NO_TEXT_BELOW = 0.2
# A sentence whose words (first start to last end) span less than this share of the loud 20 ms frames
# (within SPEECH_RANGE_DB of the loudest) explains only part of what was said:
# a long English sentence came out as a lone "네" with the rest taken for silence.
MIN_COVERAGE = 0.6
SPEECH_RANGE_DB = 25.0
# Logistic map of the margin (log-likelihood of the best sentence path minus that
# of the best path, <= 0) onto [0, 1]: MARGIN_AT_THRESHOLD gives THRESHOLD, each
# MARGIN_SCALE moves the log-odds by one. Fitted by benchmarks/asr_rejection.py --fit.
THRESHOLD = 0.6
MARGIN_AT_THRESHOLD = -4.0
MARGIN_SCALE = 2.0


def margin_to_confidence(margin: float) -> float:
    if math.isnan(margin):
        return 0.0
    z = (margin - MARGIN_AT_THRESHOLD) / MARGIN_SCALE + math.log(THRESHOLD / (1.0 - THRESHOLD))
    if z < -40:
        return 0.0
    return 1.0 / (1.0 + math.exp(-z))


def _load_model(path: Path, lattice_beam: float | None) -> vosk.Model:
    """vosk.Model(path), with the lattice beam raised to `lattice_beam` when the
    model's conf/model.conf has a smaller one. Vosk reads every file while
    loading, so the linked directory is removed right after."""
    conf = path / "conf" / "model.conf"
    if lattice_beam is None or not conf.is_file():
        return vosk.Model(str(path))
    lines = conf.read_text().splitlines()
    beams = [float(ln.split("=", 1)[1]) for ln in lines if ln.strip().startswith("--lattice-beam=")]
    if beams and beams[-1] >= lattice_beam:
        return vosk.Model(str(path))
    shadow = Path(tempfile.mkdtemp(prefix="voicebot-vosk-"))
    try:
        for entry in path.iterdir():
            if entry.name != "conf":
                (shadow / entry.name).symlink_to(entry.resolve())
        (shadow / "conf").mkdir()
        for entry in (path / "conf").iterdir():
            if entry.name != "model.conf":
                (shadow / "conf" / entry.name).symlink_to(entry.resolve())
        kept = [ln for ln in lines if not ln.strip().startswith("--lattice-beam=")]
        (shadow / "conf" / "model.conf").write_text("\n".join(kept + [f"--lattice-beam={lattice_beam}"]) + "\n")
        return vosk.Model(str(shadow))
    finally:
        shutil.rmtree(shadow, ignore_errors=True)


def _feature_top_hz(path: Path) -> float:
    """Upper edge of the model's filterbank (mfcc.conf --high-freq; <= 0 counts from Nyquist)."""
    for conf in (path / "conf" / "mfcc.conf", path / "mfcc.conf"):
        if conf.is_file():
            rate, high = 16000.0, 0.0
            for ln in conf.read_text().splitlines():
                if ln.startswith("--sample-frequency="):
                    rate = float(ln.split("=", 1)[1])
                elif ln.startswith("--high-freq="):
                    high = float(ln.split("=", 1)[1])
            return high if high > 0 else rate / 2 + high
    return 0.0


class VoskEngine:
    name = "vosk"

    def __init__(self, model_path: Path, vocabulary: Vocabulary, sample_rate: int = 16000,
                 band_fill_dbfs: float | None = BAND_FILL_DBFS) -> None:
        vosk.SetLogLevel(-1)
        model_path = Path(model_path)
        self.language = vocabulary.language
        self.sample_rate = sample_rate
        self.model_path = model_path
        graph = model_path / "graph"
        runtime_graph = (graph / "HCLr.fst").is_file() and not (graph / "HCLG.fst").is_file() or (
            (model_path / "HCLr.fst").is_file() and not (model_path / "HCLG.fst").is_file())
        grammar_mode = runtime_graph and any(c.phrases for c in vocabulary.contexts)
        self.model = _load_model(model_path, LATTICE_BEAM if grammar_mode else None)

        self.sentences: dict[str, str] = {}  # recogniser tokens -> sentence as the flow spells it
        self._grammars: dict[str, str] = {}  # context -> JSON phrase list
        dropped: list[str] = []
        for ctx in vocabulary.contexts if grammar_mode else ():
            tokens_of_ctx = []
            for phrase in _sentences(ctx.phrases):
                tokens = self._tokens(normalise(phrase))
                if tokens is None:
                    dropped.append(phrase)
                    continue
                self.sentences.setdefault(tokens, tokens)
                tokens_of_ctx.append(tokens)
            if tokens_of_ctx:
                self._grammars[ctx.name] = json.dumps(list(dict.fromkeys(tokens_of_ctx)), ensure_ascii=False)
        if grammar_mode and not self.sentences:
            raise ValueError(f"none of the {self.language!r} phrases can be spelled with the "
                             "model's vocabulary (a model for another language?)")
        self.dropped = tuple(dict.fromkeys(dropped))
        self.default_context = vocabulary.contexts[0].name if vocabulary.contexts else ""

        self._fill: np.ndarray | None = None  # unit-RMS high-band noise loop
        self._fill_floor = 32768 * 10 ** ((band_fill_dbfs or 0.0) / 20)
        if band_fill_dbfs is not None and sample_rate >= 16000 and _feature_top_hz(model_path) > 4000:
            self._fill = _band_noise(sample_rate, BAND_FILL_FROM_HZ)

        if grammar_mode:
            mode = (f"phrase list of the flow: {len(self.sentences)} sentences in {len(self._grammars)} contexts, "
                    f"{ALTERNATIVES}-best sentence-vs-free margin")
            if dropped:
                mode += f"; dropped (words not in the model): {' | '.join(self.dropped)}"
        elif runtime_graph:
            mode = "free decoding"
        else:
            mode = "free decoding (this model's static graph takes no runtime phrase list)"
        fill = (f", band fill above {BAND_FILL_FROM_HZ / 1000:.1f} kHz ({BAND_FILL_BELOW_PEAK_DB:.0f} dB "
                f"under the speech, >= {band_fill_dbfs:.0f} dBFS)") if self._fill is not None else ""
        self.description = f"vosk {model_path} ({self.language}), {mode}, {sample_rate} Hz{fill}"

    def stream(self, context: str = "") -> VoskStream:
        grammar = self._grammars.get(context) or self._grammars.get(self.default_context)
        if grammar is not None:
            rec = vosk.KaldiRecognizer(self.model, self.sample_rate, grammar)
            rec.SetMaxAlternatives(ALTERNATIVES)
        else:
            rec = vosk.KaldiRecognizer(self.model, self.sample_rate)
        rec.SetWords(True)
        return VoskStream(self, rec)

    # --- vocabulary ----------------------------------------------------------
    def _known(self, word: str) -> bool:
        index: int = self.model.vosk_model_find_word(word)
        return index >= 0

    def _tokens(self, sentence: str) -> str | None:
        """The sentence in the model's words: each word as is when the model knows
        it, else split into the fewest known pieces (Korean models spell e.g.
        비밀번호를 as 비밀번호 를); None when some word cannot be spelled."""
        out: list[str] = []
        for word in sentence.split():
            if self._known(word):
                out.append(word)
                continue
            n = len(word)
            best: list[list[str] | None] = [None] * (n + 1)
            best[n] = []
            for i in range(n - 1, -1, -1):
                for j in range(n, i, -1):
                    tail = best[j]
                    if tail is not None and self._known(word[i:j]):
                        cand = [word[i:j], *tail]
                        current = best[i]
                        if current is None or len(cand) < len(current):
                            best[i] = cand
            if best[0] is None:
                return None
            out.extend(best[0])
        return " ".join(out)


def _sentences(templates: tuple[str, ...], per_template: int = 100) -> list[str]:
    """A phrase list takes sentences, not templates: each template's first expansions."""
    out: list[str] = []
    for template in templates:
        try:
            out += expand(template, per_template)
        except TemplateError:
            out.append(template)
    return list(dict.fromkeys(out))


def _band_noise(rate: int, from_hz: float, seconds: float = 1.0) -> np.ndarray:
    """A loop of Gaussian noise with energy only above `from_hz`, unit RMS (seeded)."""
    n = int(rate * seconds)
    spec = np.fft.rfft(np.random.RandomState(20240).standard_normal(n))
    spec[np.fft.rfftfreq(n, 1 / rate) < from_hz] = 0
    noise = np.fft.irfft(spec, n)  # circular: loops without a seam
    unit: np.ndarray = (noise / noise.std()).astype(np.float32)
    return unit


class VoskStream:
    def __init__(self, engine: VoskEngine, recognizer: vosk.KaldiRecognizer) -> None:
        self._engine = engine
        self._rec = recognizer
        self._fill_at = 0
        self._peak = 0.0  # RMS of the loudest 20 ms seen so far
        self._levels: list[np.ndarray] = []  # RMS of every 20 ms frame, in order
        self._tail = np.zeros(0, dtype=np.float32)  # samples not yet in a whole frame
        self._odd = b""
        self._done = False
        self.margin: float | None = None  # sentence-vs-best margin of the last result
        self.coverage: float | None = None  # share of the loud frames inside its words

    def accept(self, pcm: bytes) -> None:
        if self._done:
            raise RuntimeError("accept() after finish()")
        if self._odd:
            pcm = self._odd + pcm
        self._odd = pcm[len(pcm) & ~1:]
        pcm = pcm[: len(pcm) & ~1]
        if not pcm:
            return
        engine = self._engine
        fill = engine._fill
        x = np.frombuffer(pcm, dtype="<i2").astype(np.float32)
        frame = engine.sample_rate // 50
        framed = np.concatenate([self._tail, x])
        whole = framed.size // frame * frame
        self._tail = framed[whole:]
        if whole:
            rms = np.sqrt(np.mean(framed[:whole].reshape(-1, frame) ** 2, axis=1))
            self._levels.append(rms)
            self._peak = max(self._peak, float(rms.max()))
        if fill is not None:
            gain = self._peak * 10 ** (-BAND_FILL_BELOW_PEAK_DB / 20) + engine._fill_floor
            idx = (self._fill_at + np.arange(x.size)) % fill.size
            self._fill_at = (self._fill_at + x.size) % fill.size
            pcm = np.clip(np.rint(x + gain * fill[idx]), -32768, 32767).astype("<i2").tobytes()
        # Vosk's own endpointing (True at 0.5 s of trailing silence) is ignored: not
        # calling Result() keeps the whole VAD utterance one recognition.
        self._rec.AcceptWaveform(pcm)

    def partial(self) -> Partial:
        """Vosk's best path so far. It carries no confidence (the N-best margin comes
        with the final result only), so it never ends a turn on its own; it lets the
        session ask the second opinion at a pause, before the turn has ended."""
        if self._done:
            raise RuntimeError("partial() after finish()")
        text = " ".join(json.loads(self._rec.PartialResult()).get("partial", "").split())
        return Partial(text, 0.0, text in self._engine.sentences, decoded=bool(self._levels))

    def finish(self) -> Transcript:
        if self._done:
            raise RuntimeError("finish() called twice")
        self._done = True
        result = json.loads(self._rec.FinalResult())
        if "alternatives" in result:
            return self._from_alternatives(result["alternatives"])
        words = tuple(
            Word(w["word"], float(w.get("conf", 0.0)), float(w["start"]), float(w["end"]))
            for w in result.get("result", []) if w.get("word") and w["word"] not in ("[unk]", "<UNK>")
        )
        text = " ".join(w.text for w in words)
        confidence = min((w.conf for w in words), default=0.0)
        return Transcript(text, round(confidence, 4), words)

    def _from_alternatives(self, alternatives: list[dict[str, Any]]) -> Transcript:
        paths = [(a.get("text", "").strip(), float(a.get("confidence", 0.0)), a.get("result", []))
                 for a in alternatives]
        if not paths or not paths[0][0]:
            return Transcript("", 0.0)  # the best path says nothing was said
        best = paths[0][1]
        sentences = self._engine.sentences
        chosen = next((p for p in paths if p[0] in sentences), None)
        if chosen is None:
            # no request among the N best: whatever it was, it was not a request;
            # its best words are kept for the transcript when not pure guesswork
            self.margin = None
            bound = margin_to_confidence(paths[-1][1] - best) if len(paths) > 1 else 0.0
            confidence = min(NO_SENTENCE_MAX_CONFIDENCE, bound)
            text, _, raw = paths[0]
        else:
            self.margin = chosen[1] - best
            confidence = margin_to_confidence(self.margin)
            text, _, raw = chosen
            text = sentences[text]
            self.coverage = self._coverage(raw)
            if self.coverage < MIN_COVERAGE:
                confidence = min(confidence, NO_SENTENCE_MAX_CONFIDENCE)
        if confidence < NO_TEXT_BELOW:
            return Transcript("", round(confidence, 4))
        posts = _posteriors([p[1] for p in paths])
        words = tuple(
            Word(w["word"], round(min(confidence, _word_posterior(w, paths, posts)), 4),
                 float(w["start"]), float(w["end"]))
            for w in raw if w.get("word")
        )
        return Transcript(text, round(confidence, 4), words)


    def _coverage(self, words: list[dict[str, Any]]) -> float:
        if not self._levels or not words:
            return 0.0
        levels = np.concatenate(self._levels)
        loud = levels >= max(levels.max(), 1.0) * 10 ** (-SPEECH_RANGE_DB / 20)
        t = (np.arange(levels.size) + 0.5) * 0.02
        start = min(float(w["start"]) for w in words) - 0.06
        end = max(float(w["end"]) for w in words) + 0.06
        inside = (t >= start) & (t <= end)
        return float((loud & inside).sum() / max(1, loud.sum()))


def _posteriors(scores: list[float]) -> list[float]:
    top = max(scores)
    weights = [math.exp(s - top) for s in scores]
    total = sum(weights)
    return [w / total for w in weights]


def _word_posterior(word: dict[str, Any], paths: list[tuple[str, float, list[dict[str, Any]]]],
                    posts: list[float]) -> float:
    """Share of the N-best mass on paths with the same word over (mostly) the same time."""
    s, e = float(word["start"]), float(word["end"])
    mass = 0.0
    for (_, _, raw), p in zip(paths, posts, strict=True):
        for other in raw:
            if other.get("word") != word["word"]:
                continue
            overlap = min(e, float(other["end"])) - max(s, float(other["start"]))
            if overlap >= 0.5 * min(e - s, float(other["end"]) - float(other["start"])):
                mass += p
                break
    return min(1.0, mass)
