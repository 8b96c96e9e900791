"""PyVISA backend ``@labstack_record``: record every SCPI exchange to a transcript.

``visalib="session.jsonl|<inner visalib>@labstack_record"``; see :mod:`labstack.visa.transcript`.
"""

from labstack.visa.transcript import RecordingVisaLibrary

WRAPPER_CLASS = RecordingVisaLibrary

__all__ = ["WRAPPER_CLASS"]
