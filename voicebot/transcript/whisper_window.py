"""Whisper on a window sized to the utterance instead of 30 seconds.

faster-whisper pads every clip to Whisper's 30 s window, so a one-second
"agent" costs the encoder as much as half a minute of speech, and on the
padding the decoder tends to repeat itself or invent words ("Thank you.")
until its length limit. CTranslate2's encoder takes shorter inputs, so a
caller's utterance is encoded in a window of its own length plus a second of
silence, at least `min_window_s`, and decoded with a length limit set by its
duration: greedily where a caller waits (the second opinion), with beam 5
for the staff's transcripts. A sentence the decoder says again is cut.
Another recogniser's words can be checked in the same pass: they are
aligned beside Whisper's own over the same audio, and their fit is the mean
log-probability per word Whisper gives them less the mean it gives its own.
Chosen on our dev material (the English fixtures and a dev phrase set, not
the held-out evaluation): 5x faster per utterance and no more word errors
(`benchmarks/whisper_window.py` measures it on the held-out set).
Utterances too long for one window take faster-whisper's own long-form path.
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np

from voicebot.types import Word

MAX_WINDOW_S = 30.0  # Whisper's own window: longer audio takes the long-form path
FRAMES_PER_S = 100  # mel frames per second
TAIL_S = 1.0  # silence after the speech inside the window
TOKENS_PER_S = 8  # a generous bound on tokens per second of speech (about 4 words)
# Checking another recogniser's words, a word the audio cannot hold counts at most
# this (natural log): one impossible word lowers the fit, it does not decide it alone.
FIT_FLOOR = -10.0
# A clause this long said this many times in a row is the decoder looping, not a caller
# (a caller's "agent, agent, agent" is one word; dev set: "I want to track, I want to track, ...");
# a shorter one this many times (a caller's "no, no, no, no" is four).
LOOP_WORDS, LOOP_TIMES, LOOP_SHORT_TIMES, LOOP_UNIT = 3, 3, 6, 3
LOOP_LETTERS = 10  # one letter this many times in a row ("으으으으으으으으으으으", not "Hmmmmm")


@dataclass(frozen=True)
class Decoded:
    text: str
    no_speech_prob: float
    words: tuple[Word, ...]
    fit: float | None = None  # of the words it was asked to check (Transcript.fit)


def window_frames(samples: int, rate: int, min_window_s: float) -> int | None:
    """Mel frames of the encoder window for an utterance of `samples`, or None
    when it does not fit one window (the long-form path takes it)."""
    speech_s = samples / rate
    window_s = max(min_window_s, speech_s + TAIL_S)
    if window_s > MAX_WINDOW_S:
        return None
    frames = int(round(window_s * FRAMES_PER_S))
    return frames + frames % 2  # the encoder's first convolution halves the frames


def decode_windows(model: Any, tokenizer: Any, audios: list[np.ndarray], frames: int, prompt: str,
                   beam_size: int, checks: list[str] | None = None) -> list[Decoded]:
    """Greedy (or beam) decodes of utterances (float32, 16 kHz) in a window of
    `frames` mel frames, as one batch: one encoder pass and one search, each
    utterance decoded as it would be alone, with the same prompt (CTranslate2
    needs the prompt's length equal across a batch). `model` is a
    faster_whisper.WhisperModel, `tokenizer` its Tokenizer for the language.
    The search's steps are shared, so a batch of 4 costs about 2.3 times one
    (benchmarks/opinion_batch.py). `checks`: another recogniser's words per
    utterance ("" for none), forced through the decoder beside Whisper's own:
    `Decoded.fit` is their mean log-probability per word less its own's."""
    import ctranslate2

    features, contents = [], []
    for audio in audios:
        feature = model.feature_extractor(audio)
        contents.append(min(feature.shape[-1], frames))
        features.append(np.pad(feature[:, :frames], ((0, 0), (0, max(0, frames - feature.shape[-1])))))
    encoded = model.model.encode(ctranslate2.StorageView.from_array(
        np.ascontiguousarray(np.stack(features), dtype=np.float32)), to_cpu=False)
    previous = tokenizer.encode(" " + prompt.strip()) if prompt.strip() else []
    start = model.get_prompt(tokenizer, previous, without_timestamps=True)
    rate = model.feature_extractor.sampling_rate
    limits = [min(448, len(start) + int(10 + TOKENS_PER_S * audio.size / rate)) for audio in audios]
    results = model.model.generate(encoded, [start] * len(audios), beam_size=beam_size,
                                   max_length=max(limits), return_no_speech_prob=True)
    spoken = []
    for result, limit in zip(results, limits, strict=True):
        tokens = [t for t in result.sequences_ids[0][: limit - len(start)] if t < tokenizer.eot]
        spoken.append(without_echo(tokens, tokenizer.decode))
    # every row of the batch is aligned (a row without words gets a placeholder token),
    # and the words to check beside them, over the same audio
    rows = [tokens or [tokenizer.eot - 1] for tokens in spoken]
    wanted = checks or [""] * len(spoken)
    checked = [i for i, check in enumerate(wanted) if check.strip() and spoken[i]]
    if checked:
        audio = np.asarray(encoded)
        encoded = ctranslate2.StorageView.from_array(np.ascontiguousarray(np.concatenate([audio, audio[checked]])))
        rows += [tokenizer.encode(" " + wanted[i].strip()) for i in checked]
    aligned = model.find_alignment(tokenizer, rows, encoded, contents + [contents[i] for i in checked])
    fit: list[float | None] = [None] * len(spoken)
    for k, i in enumerate(checked):
        fit[i] = _mean_log(aligned[len(spoken) + k]) - _mean_log(aligned[i])
    decoded = []
    for tokens, result, timed, checked_fit in zip(spoken, results, aligned[:len(spoken)], fit, strict=True):
        if not tokens:
            decoded.append(Decoded("", result.no_speech_prob, ()))
            continue
        words = tuple(Word(w["word"].strip(), float(w["probability"]), float(w["start"]), float(w["end"]))
                      for w in timed if w["word"].strip())
        decoded.append(Decoded(tokenizer.decode(tokens).strip(), result.no_speech_prob, words, checked_fit))
    return decoded


def _mean_log(words: list[dict[str, Any]]) -> float:
    """How well words fit the audio: the mean over them of the log of Whisper's
    probability for each (its tokens' mean), each at least FIT_FLOOR. A grammar
    forces other speech into its nearest phrase; Whisper, trained on far more
    speech, finds those words improbable beside its own."""
    logs = [max(math.log(p), FIT_FLOOR) if (p := float(w["probability"])) > 0 else FIT_FLOOR for w in words]
    return sum(logs) / len(logs) if logs else FIT_FLOOR


_SENTENCE_END = (".", "?", "!")


def without_echo(tokens: list[int], decode: Callable[[list[int]], str]) -> list[int]:
    """The tokens up to where Whisper starts saying its last sentence again.

    In the silence after the speech, the decoder tends to repeat what it has
    just written ("Followed by the pound key. Followed by the pound key.
    Followed") until its length limit. A sentence equal to the one before
    it, or a last unfinished one that begins it again, is cut with all that
    follows. A caller who really says "Agent. Agent." loses the second word,
    not the meaning. A clause of LOOP_WORDS or more words said LOOP_TIMES times
    in a row ("I'm not a person, I'm not a person, I'm not a person, I") is the
    decoder looping on audio it cannot read: nothing is kept. Text is decoded a
    span at a time, not a token at a time: a Korean syllable may take two tokens."""
    if _loops(decode(tokens)):
        return []
    sentences: list[tuple[int, str]] = []  # (index of its first token, its words)
    start = 0
    for i, token in enumerate(tokens):
        if decode([token]).rstrip().endswith(_SENTENCE_END) or i == len(tokens) - 1:
            sentences.append((start, _words([decode(tokens[start:i + 1])])))
            start = i + 1
    for (_, before), (begins, words) in zip(sentences, sentences[1:], strict=False):
        if words and (words == before or before.startswith(words + " ")):
            return tokens[:begins]
    return tokens


_ONE_LETTER_RUN = re.compile(rf"([^\W\d_])\1{{{LOOP_LETTERS - 1},}}")


def _loops(text: str) -> bool:
    """A unit of one to LOOP_UNIT clauses said again and again in a row: LOOP_TIMES
    times when it holds LOOP_WORDS words or more ("I'm not a person, I'm not a
    person, ..."; Korean "하나, 눈이 오시기, 하나, 눈이 오시기, ..."), LOOP_SHORT_TIMES
    times when shorter ("나, 나, 나, ..." fifteen times)."""
    if _ONE_LETTER_RUN.search(text):  # "으으으으으으으으으으으으" (not digits: "1000000")
        return True
    clauses = [_words([clause]) for clause in re.split(r"[,.?!;]", text)]
    clauses = [c for c in clauses if c]
    words = [len(c.split()) for c in clauses]
    for size in range(1, LOOP_UNIT + 1):
        same = 0  # clauses in a row equal to the one `size` before
        for i in range(size, len(clauses)):
            same = same + 1 if clauses[i] == clauses[i - size] else 0
            times = LOOP_TIMES if sum(words[i - size + 1:i + 1]) >= LOOP_WORDS else LOOP_SHORT_TIMES
            if same >= (times - 1) * size:
                return True
    return False


def _words(pieces: list[str]) -> str:
    return " ".join(re.findall(r"[\w']+", "".join(pieces).lower()))
