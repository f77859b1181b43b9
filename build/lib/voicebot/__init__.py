"""voicebot: answers phone calls, discloses the AI, hands callers to a human with their transcript."""

__version__ = "0.1.0"
