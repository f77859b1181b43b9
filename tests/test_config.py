"""The typed settings loader: every field kind (int, float, str, bool, optional,
list/tuple) from a TOML file and from VOICEBOT_* variables, the precedence
(TOML < environment < command line) and errors that name the key."""

from __future__ import annotations

import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest

from voicebot.config import Settings, load_settings, load_values
from voicebot.errors import ConfigError


@dataclass(frozen=True)
class Example:
    count: int = 1
    ratio: float = 0.5
    name: str = "x"
    enabled: bool = False
    limit: int | None = None
    label: str | None = "default"
    names: tuple[str, ...] = ()
    ports: list[int] | None = None


def load(tmp_path: Path, toml: str = "", env: dict[str, str] | None = None, **overrides: object) -> Example:
    path = tmp_path / "example.toml"
    path.write_text(toml, encoding="utf-8")
    return Example(**load_values(Example, path, env or {}, overrides))


def refused(tmp_path: Path, toml: str = "", env: dict[str, str] | None = None) -> ConfigError:
    with pytest.raises(ConfigError) as info:
        load(tmp_path, toml, env)
    return info.value


def test_every_field_kind_from_toml(tmp_path):
    got = load(tmp_path, 'count = 3\nratio = 2\nname = "y"\nenabled = true\nlimit = 7\nlabel = "z"\n'
                         'names = ["a", "b"]\nports = [5060, 5061]\n')
    assert got == Example(3, 2.0, "y", True, 7, "z", ("a", "b"), [5060, 5061])
    assert isinstance(got.ratio, float) and isinstance(got.names, tuple) and isinstance(got.ports, list)


def test_every_field_kind_from_the_environment(tmp_path):
    env = {"VOICEBOT_COUNT": "4", "VOICEBOT_RATIO": "0.25", "VOICEBOT_NAME": "", "VOICEBOT_ENABLED": "Yes",
           "VOICEBOT_LIMIT": "9", "VOICEBOT_LABEL": "", "VOICEBOT_NAMES": " a, b,,c ", "VOICEBOT_PORTS": "1,2"}
    got = load(tmp_path, env=env)
    assert got == Example(4, 0.25, "", True, 9, None, ("a", "b", "c"), [1, 2])


@pytest.mark.parametrize(("text", "value"), [
    ("1", True), ("true", True), ("ON", True), ("yes", True),
    ("0", False), ("False", False), ("off", False), (" no ", False),
])
def test_booleans_from_the_environment(tmp_path, text, value):
    assert load(tmp_path, env={"VOICEBOT_ENABLED": text}).enabled is value


def test_an_empty_value_unsets_an_optional_field(tmp_path):
    got = load(tmp_path, 'limit = 7\nlabel = "z"\n', env={"VOICEBOT_LIMIT": "", "VOICEBOT_LABEL": " "})
    assert (got.limit, got.label) == (None, None)
    assert load(tmp_path).label == "default"  # left out: the default stays


def test_the_environment_overrides_toml_and_the_command_line_both(tmp_path):
    toml = 'count = 3\nenabled = true\nnames = ["toml"]\nlimit = 1\n'
    got = load(tmp_path, toml, {"VOICEBOT_COUNT": "4", "VOICEBOT_ENABLED": "false", "VOICEBOT_NAMES": "env"},
               count=5, limit=None)  # None on the command line: not given
    assert (got.count, got.enabled, got.names, got.limit) == (5, False, ("env",), 1)


@pytest.mark.parametrize(("toml", "env", "key", "says"), [
    ("", {"VOICEBOT_ENABLED": "maybe"}, "enabled", "expected true or false, got 'maybe'"),
    ("enabled = 1\n", {}, "enabled", "expected true or false, got 1"),
    ("", {"VOICEBOT_COUNT": "eighty"}, "count", "expected int, got 'eighty'"),
    ("count = 80.5\n", {}, "count", "expected int, got 80.5"),
    ("count = true\n", {}, "count", "expected int, got True"),
    ("ratio = \"half\"\n", {}, "ratio", "expected float, got 'half'"),
    ("name = 5\n", {}, "name", "expected str, got 5"),
    ("", {"VOICEBOT_LIMIT": "lots"}, "limit", "expected int, got 'lots'"),
    ("", {"VOICEBOT_PORTS": "5060, sip"}, "ports", "expected int, got 'sip'"),
    ("names = [\"a\", 2]\n", {}, "names", "expected str, got 2"),
    ("names = { a = 1 }\n", {}, "names", "expected a list"),
    ("colour = 1\n", {}, "colour", "unknown setting"),
])
def test_a_bad_value_names_its_key(tmp_path, toml, env, key, says):
    error = refused(tmp_path, toml, env)
    assert error.key == key
    assert str(error).startswith(f"config {key}: ") and says in str(error)


def test_settings_take_a_list_of_trusted_proxies(tmp_path):
    path = tmp_path / "voicebot.toml"
    path.write_text('trusted_proxies = ["10.0.0.1", "::1"]\n', encoding="utf-8")
    assert load_settings(path, env={}).trusted_proxies == ("10.0.0.1", "::1")
    env = {"VOICEBOT_TRUSTED_PROXIES": "10.0.0.2, 10.0.0.3"}
    assert load_settings(path, env=env).trusted_proxies == ("10.0.0.2", "10.0.0.3")
    assert load_settings(env={}).trusted_proxies == Settings().trusted_proxies == ()
    with pytest.raises(ConfigError, match="'proxy.example' is not an IP address") as info:
        load_settings(env={"VOICEBOT_TRUSTED_PROXIES": "10.0.0.2,proxy.example"})
    assert info.value.key == "trusted_proxies"


def test_the_server_refuses_to_start_naming_the_bad_key(tmp_path):
    env = {"PATH": "/usr/bin:/bin", "VOICEBOT_DB": str(tmp_path / "calls.db"), "VOICEBOT_MAX_CALLS": "many"}
    done = subprocess.run([sys.executable, "-m", "voicebot", "serve"], env=env, cwd=tmp_path,
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 2
    assert "config max_calls: expected int, got 'many'" in done.stderr


@pytest.mark.parametrize(("values", "key", "says"), [
    ({"port": 70000}, "port", "must be 0-65535"),
    ({"audiosocket_port": 8080, "port": 8080}, "audiosocket_port", "differ from port"),
    ({"sip_port": -1}, "sip_port", "0 = off"),
    ({"sip_rtp_ports": "20000-10000"}, "sip_rtp_ports", "a range like"),
    ({"trusted_proxies": ("10.0.0.1", "gw")}, "trusted_proxies", "'gw' is not an IP address"),
    ({"public_url": "ftp://bot.example.com"}, "public_url", "https://"),
    ({"redis_url": "http://cache"}, "redis_url", "redis://"),
    ({"crm_webhook_url": "crm.example.com/hook"}, "crm_webhook_url", "http(s)://"),
    ({"crm_webhook_url": "https://crm.example.com/hook"}, "crm_webhook_secret", "is required"),
    ({"reuse_port": 2}, "reuse_port", "must be 0 or 1"),
    ({"vad_aggressiveness": 4}, "vad_aggressiveness", "must be 0, 1, 2 or 3"),
    ({"transcript_engine": "cloud"}, "transcript_engine", "must be off, vosk or whisper"),
    ({"second_opinion": "on"}, "second_opinion", "must be off, auto or whisper"),
    ({"transcript_calls": "some"}, "transcript_calls", "must be all or handoff"),
    ({"recording": "always"}, "recording", "must be off or consent"),
    ({"max_calls": 0}, "max_calls", "at least 1"),
    ({"unresolved_turns": 0}, "unresolved_turns", "at least 1"),
    ({"asr_timeout_s": 0}, "asr_timeout_s", "must be positive"),
    ({"second_opinion_timeout_s": 0}, "second_opinion_timeout_s", "must be positive"),
    ({"second_opinion_unsure_timeout_s": -1}, "second_opinion_unsure_timeout_s", "must be positive"),
    ({"second_opinion_threads": 0}, "second_opinion_threads", "must be positive"),
    ({"second_opinion_batch": 0}, "second_opinion_batch", "1 or more"),
    ({"second_opinion_early_queue": -1}, "second_opinion_early_queue", "0 (only an idle engine)"),
    ({"second_opinion_fallback": " "}, "second_opinion_fallback", "a Whisper model name"),
    ({"meaning_model": ""}, "meaning_model", "a sentence encoder's directory"),
    ({"drain_s": -1}, "drain_s", "0 or more seconds"),
    ({"retention_days": -1}, "retention_days", "0 (keep)"),
    ({"recording_retention_days": -1}, "recording_retention_days", "as long as the call"),
    ({"turn_join_ms": -1}, "turn_join_ms", "never join"),
    ({"asr_workers": -1}, "asr_workers", "one per CPU core"),
    ({"language": "fr"}, "language", "must be one of en, ko, got 'fr'"),
    ({"models": "fr=vosk-model-fr"}, "models", "language=model pairs"),
    ({"confidence_threshold": 1.5}, "confidence_threshold", "between 0 and 1"),
    ({"asr_decoder_sets": 65}, "asr_decoder_sets", "from 1 to 64"),
    ({"turn_complete_ms": 600}, "turn_complete_ms", "turn_complete_ms <= vad_hangover_ms"),
    ({"opt_out_key": "0"}, "opt_out_key", "one DTMF key"),
    ({"opt_out_key": "7", "disclosure_text": "This is a bot."}, "opt_out_key", "name the key"),
])
def test_each_rule_refuses_its_bad_value_naming_its_key(values, key, says):
    assert Settings()  # the defaults pass every rule
    with pytest.raises(ConfigError) as info:
        Settings(**values)
    assert info.value.key == key and says in str(info.value)
