"""voicebot: answers phone calls, discloses the AI, hands callers to a human with their transcript."""

import os

# numpy's OpenBLAS starts a thread per core for a matrix product and lets them spin
# after it; in this server and its workers (each decodes one utterance at a time) they
# only took a core from the calls: Whisper tiny.en 0.20 -> 0.10 CPU s per ask, the
# sentence encoder 14 -> 8 ms per sentence, as fast as before (benchmarks/opinion_workers.py).
# Set before numpy loads (any voicebot import comes first); a deployment's own value wins.
os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")

__version__ = "0.1.0"
