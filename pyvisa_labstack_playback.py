"""PyVISA backend ``@labstack_playback``: answer drivers from a recorded SCPI transcript.

``visalib="session.jsonl@labstack_playback"``; see :mod:`labstack.visa.transcript`.
"""

from labstack.visa.transcript import PlaybackVisaLibrary

WRAPPER_CLASS = PlaybackVisaLibrary

__all__ = ["WRAPPER_CLASS"]
