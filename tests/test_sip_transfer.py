"""How the SIP endpoint reads a transfer's outcome, and what its REFER says,
without a network: the progress it would get from the REFER's response and
the NOTIFYs is fed to it directly."""

from __future__ import annotations

import asyncio
from types import SimpleNamespace

import pytest

from voicebot.config import Settings
from voicebot.telephony.sip import _SipCall, refer_target, refer_to, transfer_headers


def call(timeout_s: float = 5.0) -> _SipCall:
    endpoint = SimpleNamespace(settings=Settings(sip_transfer_timeout_s=timeout_s))
    return _SipCall(endpoint, invite=None)  # type: ignore[arg-type]


@pytest.mark.parametrize(("progress", "outcome"), [
    ([("refer", 202), ("notify", 100), ("notify", 180), ("notify", 200)], "connected"),
    ([("refer", 403)], "refused-403"),  # REFER rejected
    ([("refer", 202), ("notify", 180), ("notify", 486)], "failed-486"),  # NOTIFY with a failure
    ([("notify", 100), ("refer", 202), ("notify", 503)], "failed-503"),  # NOTIFY before the 202
])
async def test_transfer_outcome_follows_the_refer_response_and_the_notifies(progress, outcome):
    c = call()
    for item in progress:
        c.progress.put_nowait(item)
    assert await c._transfer_result() == outcome


async def test_no_final_notify_in_time_is_no_answer():
    c = call(timeout_s=0.05)
    c.progress.put_nowait(("refer", 202))
    c.progress.put_nowait(("notify", 180))  # ringing, and then nothing
    assert await c._transfer_result() == "no-answer"


async def test_a_caller_who_hangs_up_while_it_rings_is_gone():
    c = call()
    c.progress.put_nowait(("refer", 202))
    asyncio.get_running_loop().call_later(0.01, c.hung_up.set)
    assert await c._transfer_result() == "hung-up"


def test_the_refer_names_the_target_and_carries_the_call_id():
    assert refer_target("sip:queue@pbx.example.com", "10.0.0.1") == "sip:queue@pbx.example.com"
    assert refer_target("+15550100", "10.0.0.1") == "sip:+15550100@10.0.0.1"  # via the caller's PBX
    assert transfer_headers("abc") == {"X-Voicebot-Call-Id": "abc", "User-to-User": "616263;encoding=hex"}
    assert refer_to("sip:q@pbx", "abc") == (
        "<sip:q@pbx?X-Voicebot-Call-Id=abc&User-to-User=616263%3Bencoding%3Dhex>")
