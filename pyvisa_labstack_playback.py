"""PyVISA backend ``@labstack_playback``: answer drivers from a recorded SCPI transcript.

``visalib="session.jsonl@labstack_playback"``; see :mod:`labstack.transcript`.
"""

from labstack.transcript import PlaybackVisaLibrary

WRAPPER_CLASS = PlaybackVisaLibrary

__all__ = ["WRAPPER_CLASS"]
