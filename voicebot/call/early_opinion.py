"""A second opinion started at a pause, while the turn may still go on.

When the endpointer reports a short pause and the turn does not end there, the
caller will usually not speak again: the rest of the hangover is silence. If
what the grammar has heard so far is a reading the policy would ask the
free-form engine about, the call asks it now, on the audio so far, instead of
after the hangover. The turn's end then finds the answer ready (or under way)
rather than starting a job of a few hundred milliseconds on the caller's wait.

The answer is used only when the turn ended in that same pause (no speech
since, so the audio differs by silence alone) and the question is the same;
otherwise it is dropped and the turn's own audio is asked about as before.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, replace

from voicebot.types import Transcript

# A partial result slower than this means the recognisers are behind the audio
# (a burst of turns ending together): no speculative work is added then.
BEHIND_S = 0.15


@dataclass(frozen=True)
class EarlyOpinion:
    pause: int  # the endpointer's number of the pause it was asked at
    prompt: str  # the words that steered the engine (they follow the question)
    answer: asyncio.Task[Transcript | None]
    check: str = ""  # the grammar's words so far, whose fit the engine scored

    async def heard(self, check: str) -> Transcript | None:
        """Its answer; the fit only if it scored the same words as the turn's `check`."""
        heard = await self.answer
        if heard is not None and heard.fit is not None and check != self.check:
            return replace(heard, fit=None)
        return heard

    def fits(self, pause: int, prompt: str) -> bool:
        """Whether the turn ended in this opinion's pause at the same question."""
        return pause != 0 and pause == self.pause and prompt == self.prompt

    def drop(self) -> None:
        self.answer.cancel()  # the engine's job itself runs on; its words are not used
