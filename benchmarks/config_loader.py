"""Settings loaders side by side: voicebot's typed loader (voicebot/config.py)
against pydantic-settings with the same fields, the same TOML file and the
same VOICEBOT_* variables.

    python benchmarks/config_loader.py [--runs 15]

Prints, per loader, the median wall time of a fresh interpreter that imports
the loader and loads the settings once (what every `voicebot` command pays at
start), the bare interpreter for reference, and the time of one more load in
a warm process. pydantic-settings is measured only when the interpreter has it
(`pip install pydantic-settings`); voicebot.config needs nothing beyond the
standard library.
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
ENV = {"VOICEBOT_PORT": "9100", "VOICEBOT_TRUSTED_PROXIES": "10.0.0.1,10.0.0.2", "VOICEBOT_MAX_CALL_S": "600"}
TOML = 'human_line = "+15551234"\nlanguage = "ko"\nmax_calls = 32\n'

VOICEBOT = """
from voicebot.config import load_settings
def load():
    return load_settings(TOML_PATH)
"""

PYDANTIC = """
import dataclasses, typing
from pydantic import create_model, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict, TomlConfigSettingsSource
from voicebot.config import Settings

class _Base(BaseSettings):
    # list fields come as comma-separated text, as voicebot documents them, not JSON
    model_config = SettingsConfigDict(env_prefix="VOICEBOT_", toml_file=TOML_PATH, frozen=True,
                                      enable_decoding=False)

    @model_validator(mode="before")
    @classmethod
    def _split_lists(cls, data):
        value = data.get("trusted_proxies")
        if isinstance(value, str):
            data["trusted_proxies"] = [p.strip() for p in value.split(",") if p.strip()]
        return data

    @classmethod
    def settings_customise_sources(cls, settings_cls, init_settings, env_settings, dotenv_settings,
                                   file_secret_settings):
        return init_settings, env_settings, TomlConfigSettingsSource(settings_cls)

hints = typing.get_type_hints(Settings)
fields = {f.name: (hints[f.name], f.default) for f in dataclasses.fields(Settings)}
Model = create_model("PydanticSettings", __base__=_Base, **fields)
def load():
    return Model()
"""

TIMED = """
import time
t0 = time.perf_counter()
{setup}
value = load()
t1 = time.perf_counter()
for _ in range(200):
    load()
t2 = time.perf_counter()
assert value.port == 9100 and value.max_calls == 32 and value.language == "ko", value
print(t1 - t0, (t2 - t1) / 200)
"""


def _started(args: list[str]) -> float:
    began = time.perf_counter()
    subprocess.run([sys.executable, *args], check=True)
    return time.perf_counter() - began


def fresh(code: str, toml_path: str) -> tuple[float, float]:
    """(s to import the loader and load once in a fresh process, s per warm load)."""
    env = {**os.environ, **ENV, "PYTHONPATH": str(ROOT)}
    done = subprocess.run([sys.executable, "-c", code.replace("TOML_PATH", repr(toml_path))],
                          env=env, capture_output=True, text=True)
    if done.returncode:
        raise SystemExit(done.stderr[-2000:])
    first, warm = map(float, done.stdout.split())
    return first, warm


def has_pydantic_settings() -> bool:
    done = subprocess.run([sys.executable, "-c", "import pydantic_settings"], capture_output=True)
    return done.returncode == 0


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=15)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        toml_path = str(Path(tmp) / "voicebot.toml")
        Path(toml_path).write_text(TOML, encoding="utf-8")
        loaders = {"voicebot.config": VOICEBOT}
        if has_pydantic_settings():
            loaders["pydantic-settings"] = PYDANTIC
        print(f"python {sys.version.split()[0]}, {args.runs} fresh processes each, medians")
        bare = [_started(["-c", "pass"]) for _ in range(args.runs)]
        print(f"bare interpreter start: {statistics.median(bare) * 1e3:.1f} ms")
        print(f"{'loader':<20} {'import+load ms':>15} {'warm load µs':>13}")
        for name, setup in loaders.items():
            rows = [fresh(TIMED.format(setup=setup), toml_path) for _ in range(args.runs)]
            print(f"{name:<20} {statistics.median(r[0] for r in rows) * 1e3:>15.1f} "
                  f"{statistics.median(r[1] for r in rows) * 1e6:>13.0f}")
        if "pydantic-settings" not in loaders:
            print("pydantic-settings: not installed in this interpreter (pip install pydantic-settings)")


if __name__ == "__main__":
    main()
