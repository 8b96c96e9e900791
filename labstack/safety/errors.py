"""Errors of the safety layer: each says which instrument, channel or command and why."""

from __future__ import annotations


class _Readable:
    """QCoDeS appends context ("writing ... to ...") to ``args``; keep ``str`` a sentence."""

    args: tuple[object, ...]

    def __str__(self) -> str:
        head, *context = (str(a) for a in self.args) or [""]
        return head + "".join(f"; {c}" for c in context)


class SafetyError(_Readable, ValueError):
    """A set-point, SCPI message or plan refused because it breaks a limit, ramp or interlock.

    Raised before anything is sent, so the hardware never sees the refused value.
    """


class InstrumentFault(_Readable, RuntimeError):
    """An instrument that kept failing after the retries labstack allows.

    ``instrument`` and ``command`` name what failed; ``attempts`` how often it was tried.
    """

    def __init__(self, instrument: str, command: str, attempts: int, cause: BaseException) -> None:
        super().__init__(
            f"{instrument}: {command!r} failed after {attempts} attempt(s): "
            f"{type(cause).__name__}: {cause}"
        )
        self.instrument = instrument
        self.command = command
        self.attempts = attempts
        self.cause = cause


class RunAborted(_Readable, RuntimeError):
    """A run stopped on request (Jupyter, CLI control file) or by a tripped interlock."""
