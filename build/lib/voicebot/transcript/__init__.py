"""Free-form transcripts for the person who takes the call.

The decision engine (voicebot.asr) is fast and constrained to the dialog's
grammar: it decides. This package runs a second, large-vocabulary pass over
the same VAD-cut utterances in the background, on its own worker processes
and bounded queue, so the human reads what the caller actually said and no
decision ever waits for it.
"""
