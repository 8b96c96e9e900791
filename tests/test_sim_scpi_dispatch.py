"""The virtual instruments' SCPI dispatch: the handlers tried first by a command's first
character find the same handler as trying every handler in order."""

from __future__ import annotations

import pytest

import labstack.sim.instruments  # noqa: F401  (defines every twin)
from labstack.sim.instruments.scpi import ScpiDevice, first_characters

TWINS = sorted(ScpiDevice.__subclasses__(), key=lambda c: c.__name__)

COMMANDS = [
    "*IDN?", "*RST", "*OPC?", "SYST:ERR?", "syst:err:all?", "SOUR5:VOLT 0.125", "sour5:volt?",
    "sour12:volt:slew 100", "SOURCE3:VOLTAGE:MODE FIX", ":SOUR1:VOLT 1.5", "SOUR2:FUNC:MODE VOLT",
    "READ?", "READ3?", "fetc7?", "FETC?", "READ? (@1,2:4)", "SAMP:CHAN (@0,3)", "samp:coun 100",
    "INIT", "FORM:DATA REAL,32", "CLOC:TIME?", "CLOCK:ADV 0.5", "SLVL 0.1", "HARM 2", "OFSL?",
    "RANGE 0,3", "SETP 1,0.05", "READ:DEV:T8:TEMP:SIG:TEMP", "SET:DEV:T8:TEMP:LOOP:TSET:0.05",
    "ARR:VOLT?", "OUTP:TRIG1:WIDT?", "TRAC:CAT?", "bogus 1", "", "9ABC",
]


def _every_handler(cls: type[ScpiDevice], text: str) -> str | None:
    for regex, name in cls._handlers:
        if regex.match(text):
            return name
    return None


def _by_start(cls: type[ScpiDevice], text: str) -> str | None:
    for regex, name in cls._candidates(text[:1].upper()):
        if regex.match(text):
            return name
    return None


@pytest.mark.parametrize("cls", TWINS, ids=lambda c: c.__name__)
def test_dispatch_by_first_character_finds_the_first_matching_handler(cls):
    found = 0
    for text in COMMANDS:
        expected = _every_handler(cls, text)
        assert _by_start(cls, text) == expected, (cls.__name__, text)
        found += expected is not None
    assert found >= 4  # the common commands at least: the comparison saw real handlers


def test_every_twin_is_compared():
    assert {c.__name__ for c in TWINS} >= {"VirtualQDac2", "VirtualSampler", "VirtualClockInstrument", "VirtualLakeshore372"}


def test_first_characters_of_patterns():
    assert first_characters(r"SOUR(?:CE)?(\d+):VOLT (\S+)\Z") == frozenset("S")
    assert first_characters(r"\*IDN\?") == frozenset("*")
    assert first_characters(r"(?:READ|FETC)(\d+)\?") == frozenset("RF")
    assert first_characters(r"[ab]x") == frozenset("AB")
    assert first_characters(r":?SOUR(\d)") is None  # optional first character: any start
    assert first_characters(r"[a-z]+") is None
    assert first_characters(r"(") is None  # not a pattern


def _split_by_characters(message: str) -> list[str]:
    """The splitting rule read character by character (lines, then ``;`` outside quotes)."""
    out: list[str] = []
    for line in message.splitlines() or [""]:
        current, quote = "", None
        for ch in line:
            if quote:
                current += ch
                quote = None if ch == quote else quote
            elif ch in "\"'":
                quote, current = ch, current + ch
            elif ch == ";":
                out.append(current.strip())
                current = ""
            else:
                current += ch
        out.append(current.strip())
    return [c for c in out if c]


def test_split_commands_fast_path_splits_as_the_character_rule():
    """Lines without quotes are split at once; the result is the character rule's, for
    random messages with and without quotes, line ends, spaces and empty commands."""
    import random

    from labstack.scpi_text import split_commands

    rng = random.Random(11)
    alphabet = ["a", "B", "1", " ", ";", ";", ":", "?", "\n", "\r\n", '"', "'", "#", "\t"]
    for _ in range(3000):
        message = "".join(rng.choice(alphabet) for _ in range(rng.randint(0, 30)))
        assert split_commands(message) == _split_by_characters(message), repr(message)
    many = ";".join(f"sour{k}:volt {0.01 * k:.9g}" for k in range(1, 25))
    assert split_commands(many) == [f"sour{k}:volt {0.01 * k:.9g}" for k in range(1, 25)]
    assert split_commands('DISP:TEXT "a;b"; *RST') == ['DISP:TEXT "a;b"', "*RST"]
