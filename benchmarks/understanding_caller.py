"""One scripted caller for benchmarks/understanding.py: a native-protocol
(`/v1/stream`) gateway that speaks a clip once the bot listens, answers the
bot's confirmation question with a yes/no clip, repeats itself with another
clip after a reprompt, and records how the call went.

The line clock is the replay client's: bot audio "plays" at `speed` times real
time and each mark is echoed when its audio has played."""

from __future__ import annotations

import asyncio
import json
import time
from dataclasses import asdict, dataclass, field
from typing import Any

import aiohttp
import numpy as np

from voicebot.replay.client import FRAME_MS, _Line

RATE = 8000
STEP = RATE * FRAME_MS // 1000
CONFIRM = "confirm_human"
REPROMPTS = ("didnt_catch", "unresolved", "no_match", "reprompt")
ANSWERS = ("order_status", "password_reset")
LISTEN_TIMEOUT_S = 60.0  # disclosure + menu must have played by then
REPLY_TIMEOUT_S = 30.0  # after the caller stops: the bot's next prompt or handoff (> --asr-timeout)


@dataclass
class Turn:
    said: str  # clip file
    reply: str  # "prompt:<name>" / "handoff:<reason>" / "end:<reason>" / "none"


@dataclass
class Outcome:
    file: str
    arm: str
    language: str
    cls: str
    intent: str | None
    turns: list[Turn] = field(default_factory=list)
    handoff: str | None = None  # the handoff reason, if any
    confirmed: bool = False  # the bot asked the confirmation question
    answers: list[str] = field(default_factory=list)  # routine answer prompts played
    prompts: list[str] = field(default_factory=list)  # every prompt after the menu
    transcripts: list[str] = field(default_factory=list)
    error: str = ""
    family: str = ""  # the clip's voice family (espeak-ng, flite, festival, human, ...)

    def record(self) -> dict[str, Any]:
        out = asdict(self)
        out["class"] = out.pop("cls")
        return out


@dataclass
class Script:
    """What the caller says: the clip, and its answers if the bot asks back."""
    clip: np.ndarray
    answer_confirm: np.ndarray  # yes for a person request, no otherwise
    answer_confirm_file: str
    again: np.ndarray | None  # said after a reprompt (out-of-domain), else hang up
    again_file: str = ""


class Caller:
    def __init__(self, ws: aiohttp.ClientWebSocketResponse, speed: float, number: str) -> None:
        self.ws = ws
        self.number = number  # each call its own caller (voicebot.replay.callers)
        self.speed = speed
        self.events: asyncio.Queue[dict[str, Any]] = asyncio.Queue()
        self.line = _Line(speed, "played", self._echo)
        self.speech: list[np.ndarray] = []  # queued caller audio
        self.spoke_at = 0.0  # monotonic time the last clip's first frame was sent
        self.heard: list[tuple[float, np.ndarray]] = []  # bot audio: (when it plays on the line, samples)
        self._sends: set[asyncio.Future[None]] = set()

    async def run(self, script: Script, outcome: Outcome) -> None:
        await self.talk(converse(self, script, outcome))

    async def talk(self, conversation: Any) -> None:
        """Open the call, run `conversation` (a coroutine using this caller), hang up."""
        await self.ws.send_str(json.dumps({"event": "start", "caller": self.number,
                                           "sample_rate": RATE, "encoding": "pcm16"}))
        tasks = [asyncio.create_task(self._send()), asyncio.create_task(self._receive())]
        try:
            await conversation
        finally:
            if not self.ws.closed:
                await self.ws.send_str(json.dumps({"event": "stop"}))
                await self.ws.close()
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
            for handle in self.line.pending:
                handle.cancel()

    def say(self, clip: np.ndarray) -> None:
        self.speech.append(clip)

    async def next_event(self, kinds: tuple[str, ...], timeout: float) -> dict[str, Any] | None:
        deadline = time.monotonic() + timeout
        while (left := deadline - time.monotonic()) > 0:
            try:
                event = await asyncio.wait_for(self.events.get(), left)
            except TimeoutError:
                return None
            if event["event"] in kinds:
                return event
        return None

    async def _send(self) -> None:
        """20 ms frames: queued speech at `speed` times real time, silence in between
        at real time (a caller waiting on the line)."""
        silence = np.zeros(STEP, np.int16)
        while not self.ws.closed:
            if self.speech:
                clip = self.speech.pop(0)
                start = self.spoke_at = time.monotonic()
                for i in range(0, clip.size, STEP):
                    frame = clip[i: i + STEP]
                    if frame.size < STEP:
                        frame = np.concatenate([frame, silence[: STEP - frame.size]])
                    await self.ws.send_bytes(frame.astype("<i2").tobytes())
                    ahead = start + (i // STEP + 1) * FRAME_MS / 1000 / (self.speed or 1e9) - time.monotonic()
                    await asyncio.sleep(max(0.0, ahead))
            else:
                await self.ws.send_bytes(silence.tobytes())
                await asyncio.sleep(FRAME_MS / 1000)

    async def _receive(self) -> None:
        async for msg in self.ws:
            if msg.type == aiohttp.WSMsgType.BINARY:
                self.heard.append((max(time.monotonic(), self.line.play_end), np.frombuffer(msg.data, "<i2")))
                self.line.audio(len(msg.data) / 2 / RATE)
            elif msg.type == aiohttp.WSMsgType.TEXT:
                event = json.loads(msg.data)
                if event.get("event") == "mark":
                    self.line.mark(event["name"])
                elif event.get("event") == "clear":
                    self.line.clear()
                self.events.put_nowait(event)
        self.events.put_nowait({"event": "closed"})

    def _echo(self, name: str) -> None:
        if not self.ws.closed:
            task = asyncio.ensure_future(self.ws.send_str(json.dumps({"event": "mark", "name": name})))
            self._sends.add(task)
            task.add_done_callback(self._sends.discard)
        self.events.put_nowait({"event": "played", "name": name})


DECISIVE = ("prompt", "handoff", "end", "closed")


async def converse(caller: Caller, script: Script, outcome: Outcome) -> None:
    """Wait for the menu to play, speak, and follow the bot for at most two more turns."""
    if not await played(caller, "menu", LISTEN_TIMEOUT_S):
        outcome.error = "the menu never played"
        return
    said, clip = outcome.file, script.clip
    for _ in range(3):
        caller.say(clip)
        reply = await reply_to(caller, outcome, clip.size / RATE / (caller.speed or 1e9) + REPLY_TIMEOUT_S)
        outcome.turns.append(Turn(said, reply))
        name = reply.removeprefix("prompt:")
        if not reply.startswith("prompt:") or name in ANSWERS:
            return
        if name == CONFIRM and not outcome.confirmed:
            outcome.confirmed = True
            said, clip = script.answer_confirm_file, script.answer_confirm
        elif name in REPROMPTS and script.again is not None and len(outcome.turns) == 1:
            said, clip = script.again_file, script.again
        else:
            return
        if not await played(caller, name, REPLY_TIMEOUT_S):
            return


async def reply_to(caller: Caller, outcome: Outcome, timeout: float) -> str:
    """The bot's next decisive event; a handoff prompt is followed to its handoff event."""
    while True:
        event = await caller.next_event(DECISIVE + ("transcript",), timeout)
        if event is None:
            return "none"
        kind = event["event"]
        if kind == "transcript":
            outcome.transcripts.append(f"{event.get('text', '')} [{event.get('intent')}]")
            continue
        if kind == "prompt":
            name = event.get("name", "")
            outcome.prompts.append(name)
            if name in ANSWERS:
                outcome.answers.append(name)
            if name != "handoff":
                return f"prompt:{name}"
            continue  # the handoff event follows once its prompt has played
        if kind == "handoff":
            outcome.handoff = event.get("reason")
            return f"handoff:{outcome.handoff}"
        return f"{kind}:{event.get('reason', '')}"


async def played(caller: Caller, prompt: str, timeout: float) -> bool:
    """Wait until the prompt named `prompt` has played on the line (its mark echoed)."""
    deadline = time.monotonic() + timeout
    while (left := deadline - time.monotonic()) > 0:
        event = await caller.next_event(("played", "closed", "handoff", "end"), left)
        if event is None or event["event"] != "played":
            return False
        if event["name"].endswith(f"-{prompt}"):
            return True
    return False
