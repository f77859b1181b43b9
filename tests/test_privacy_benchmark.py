"""The encryption-cost benchmark still runs (tiny size: seconds, not figures)."""

from .test_benchmarks import _run


def test_privacy_writes_benchmark_runs():
    result = _run("privacy_writes.py", "--calls", "3", "--rounds", "1", "--json")
    assert set(result["ms_per_call"]) == {"plain", "sealed"}
    assert result["bytes"]["sealed"] > 0 and result["cpu_only"]["seal_utterance_us"] > 0
