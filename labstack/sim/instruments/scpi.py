"""A small SCPI message engine for the virtual instruments.

Handlers are methods decorated with :func:`scpi` and a regular expression over
the command header (matched case-insensitively against the whole command); the
regex groups become the handler's arguments. A message may hold several
commands separated by ``;``. Errors go to the instrument's error queue as real
instruments do (``-113,"Undefined header"`` for an unknown command,
``-222,"Data out of range"`` for a bad value) and are read back with
``SYST:ERR?`` / ``SYST:ERR:ALL?``; a query that fails produces no answer, so the
host sees a timeout, again as with hardware.
"""

from __future__ import annotations

import re
import re._constants as re_constants
import re._parser as re_parser
from collections import deque
from collections.abc import Callable
from typing import Any

from labstack.scpi_text import split_commands

Response = str | bytes | None


class ScpiError(Exception):
    """An SCPI error with its standard code (e.g. -222 Data out of range)."""

    def __init__(self, code: int, message: str) -> None:
        super().__init__(f'{code},"{message}"')
        self.code = code
        self.message = message


def undefined_header() -> ScpiError:
    return ScpiError(-113, "Undefined header")


def out_of_range(detail: str = "") -> ScpiError:
    return ScpiError(-222, "Data out of range" + (f"; {detail}" if detail else ""))


def bad_parameter(detail: str = "") -> ScpiError:
    return ScpiError(-224, "Illegal parameter value" + (f"; {detail}" if detail else ""))


def scpi(pattern: str) -> Callable[[Callable[..., Response]], Callable[..., Response]]:
    """Mark a method as the handler of commands matching ``pattern``."""

    def mark(func: Callable[..., Response]) -> Callable[..., Response]:
        func._scpi_patterns = (*getattr(func, "_scpi_patterns", ()), pattern)  # type: ignore[attr-defined]
        return func

    return mark


def parse_float(text: str) -> float:
    """A finite number; NaN and infinities are out of range, as on real instruments."""
    try:
        value = float(text)
    except ValueError:
        raise ScpiError(-104, f"Data type error; {text!r} is not a number") from None
    if value != value or value in (float("inf"), float("-inf")):
        raise out_of_range(f"{text!r} is not a finite number")
    return value


def binary_block(payload: bytes | memoryview) -> bytes:
    """IEEE 488.2 definite-length arbitrary block: ``#<n><length><payload>``
    (``payload``: any bytes-like object, copied once into the block)."""
    length = str(memoryview(payload).nbytes)
    return b"".join((b"#", str(len(length)).encode(), length.encode(), payload))


def first_characters(pattern: str) -> frozenset[str] | None:
    """The upper-case characters a match of ``pattern`` (case-insensitive) can start
    with, or None when the pattern does not say (an optional or variable start)."""
    try:
        tree = re_parser.parse(pattern, re.IGNORECASE)
    except re.error:
        return None
    return _first_of(list(tree))


def _first_of(items: list[Any]) -> frozenset[str] | None:
    if not items:
        return None
    op, arg = items[0]
    if op is re_constants.LITERAL:
        return frozenset(chr(arg).upper())
    if op is re_constants.IN:
        chars: set[str] = set()
        for kind, value in arg:
            if kind is not re_constants.LITERAL:
                return None  # a range, a category or a negation: any start
            chars.add(chr(value).upper())
        return frozenset(chars)
    if op is re_constants.SUBPATTERN:
        return _first_of(list(arg[-1]))
    if op is re_constants.BRANCH:
        starts = [_first_of(list(branch)) for branch in arg[1]]
        if any(first is None for first in starts):
            return None
        return frozenset().union(*starts)  # type: ignore[arg-type]
    if op in (re_constants.MAX_REPEAT, re_constants.MIN_REPEAT) and arg[0] >= 1:
        return _first_of(list(arg[2]))
    return None


class ScpiDevice:
    """Base of the virtual instruments: dispatch, error queue, IEEE 488.2 common commands."""

    idn: str = "labstack,virtual,0,0"
    write_termination: str = "\n"
    read_termination: str = "\n"

    _handlers: list[tuple[re.Pattern[str], str]]
    #: per handler, the (upper-case) characters a command it matches can start with; None: any
    _starts: list[frozenset[str] | None]
    #: handlers a command starting with a given character may match, in order (filled on use)
    _by_start: dict[str, list[tuple[re.Pattern[str], str]]]

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        handlers: list[tuple[re.Pattern[str], str]] = []
        for klass in reversed(cls.__mro__):
            for name, member in vars(klass).items():
                for pattern in getattr(member, "_scpi_patterns", ()):
                    handlers.append((re.compile(pattern + r"\Z", re.IGNORECASE), name))
        cls._handlers = handlers
        cls._starts = [first_characters(regex.pattern) for regex, _ in handlers]
        cls._by_start = {}

    def __init__(self) -> None:
        self.errors: deque[ScpiError] = deque(maxlen=100)
        self.log: list[str] | None = None  # set to a list to record every command

    # ------------------------------------------------------------------ engine
    def handle(self, message: str) -> bytes | None:
        """Process one message; return the response bytes (terminated) or None."""
        answers: list[bytes] = []
        for command in split_commands(message):
            if self.log is not None:
                self.log.append(command)
            try:
                answer = self._dispatch(command)
            except (ValueError, OverflowError, IndexError, KeyError, TypeError) as exc:
                # a real instrument never crashes on what it is sent: it queues an error
                err = bad_parameter(f"{type(exc).__name__}: {exc}")
                self.errors.append(err)
                if command.rstrip().split(" ")[0].endswith("?"):
                    return None
                continue
            except ScpiError as err:
                self.errors.append(err)
                if command.rstrip().split(" ")[0].endswith("?"):
                    return None  # a failed query gives no answer: the host times out
                continue
            if answer is not None:
                answers.append(answer if isinstance(answer, bytes) else answer.encode())
        if not answers:
            return None
        return b";".join(answers) + self.read_termination.encode()

    def _dispatch(self, command: str) -> Response:
        command = command.strip()
        header, _, args = command.partition(" ")
        text = header + (" " + args.strip() if args.strip() else "")
        for regex, name in self._candidates(text[:1].upper()):
            match = regex.match(text)
            if match:
                return getattr(self, name)(*match.groups())
        raise undefined_header()

    @classmethod
    def _candidates(cls, start: str) -> list[tuple[re.Pattern[str], str]]:
        """The handlers, in order, that may match a command starting with ``start``: the
        others cannot (their pattern starts otherwise), so the first match is the same as
        over every handler, after a few regular expressions instead of dozens."""
        found = cls._by_start.get(start)
        if found is None:
            found = [h for h, first in zip(cls._handlers, cls._starts, strict=True)
                     if first is None or start in first]
            cls._by_start[start] = found
        return found

    # ------------------------------------------------------- common commands
    @scpi(r"\*IDN\?")
    def _idn(self) -> str:
        return self.idn

    @scpi(r"\*CLS")
    def _cls(self) -> None:
        self.errors.clear()

    @scpi(r"\*RST")
    def _rst(self) -> None:
        self.reset()

    @scpi(r"\*OPC\?")
    def _opc(self) -> str:
        return "1"

    @scpi(r"\*STB\?")
    def _stb(self) -> str:
        return "4" if self.errors else "0"

    @scpi(r"\*ESR\?")
    def _esr(self) -> str:
        return "0"

    @scpi(r"\*TRG")
    def _trg(self) -> None:
        return None

    @scpi(r"SYST(?:EM)?:ERR(?:OR)?(?::NEXT)?\?")
    def _error_next(self) -> str:
        if not self.errors:
            return '0,"No error"'
        return str(self.errors.popleft())

    @scpi(r"SYST(?:EM)?:ERR(?:OR)?:ALL\?")
    def _error_all(self) -> str:
        if not self.errors:
            return '0,"No error"'
        text = ",".join(str(e) for e in self.errors)
        self.errors.clear()
        return text

    @scpi(r"SYST(?:EM)?:ERR(?:OR)?:COUN(?:T)?\?")
    def _error_count(self) -> str:
        return str(len(self.errors))

    def reset(self) -> None:
        """Return to power-on state; instruments override."""
