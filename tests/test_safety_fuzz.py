"""Fuzzing: the virtual instruments' SCPI parsers and labstack's reply parsers never crash.

A virtual instrument answers anything with a reply or an entry in its SCPI error
queue; a reply parser returns a value or raises :class:`ReplyError`, nothing else.
"""

from __future__ import annotations

import re
import struct

import numpy as np
import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from labstack.drivers._replies import (
    ReplyError,
    block_length,
    float32_cells,
    float_reply,
    parse_block,
)
from labstack.sim.instruments import VirtualInstruments
from labstack.sim.instruments.scpi import binary_block
from labstack.sim.lab import VirtualLab
from labstack.sim.truth import GroundTruth

HEADERS = [
    "sour1:volt", "SOUR24:VOLT:SLEW", "sour3:rang", "sour2:filt", "sour1:volt:mode", "READ? (@1,2)", "read5?",
    "OUTP:TRIG1:WIDT", "sens3:coun", "KRDG?", "SRDG?", "INSET", "INTYPE", "OUTMODE", "PID", "RANGE", "SETP",
    "HTRSET", "MOUT", "RAMP", "INNAME", "TLIMIT", "SAMP:RATE", "SAMP:COUN", "FORM:DATA", "INIT", "FETC?",
    "READ?", "CLOC:ADV", "CLOC:TIME?", "*IDN?", "*RST", "SYST:ERR?",
]
ARGS = st.one_of(
    st.text(max_size=12),
    st.from_regex(r"[-+]?[0-9]{0,4}(\.[0-9]{0,3})?([eE][-+]?[0-9]{1,3})?", fullmatch=True),
    st.lists(st.integers(-5, 30), max_size=6).map(lambda xs: ",".join(map(str, xs))),
    st.sampled_from(["A", "AA", "A1", "nan", "inf", "-0", "1e400", "0,1", ",", "(@1:3)", "(@1:)", "(@99)",
                     "REAL,32", "\"x\"", "99999999999999999999"]),
)
COMMANDS = st.one_of(
    st.text(max_size=40),
    st.tuples(st.sampled_from(HEADERS), st.sampled_from([" ", "", "?", " ?"]), ARGS).map("".join),
    st.lists(st.tuples(st.sampled_from(HEADERS), ARGS).map(" ".join), min_size=1, max_size=3).map(";".join),
)


@pytest.fixture(scope="module")
def devices():
    lab = VirtualLab(GroundTruth.from_seed(3, 4, "chain"), seed=3)
    instruments = VirtualInstruments(lab)
    return {name: instruments.get(name) for name in ("qdac1", "qdac2", "ls372", "sampler", "clock")}


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(name=st.sampled_from(["qdac1", "ls372", "sampler", "clock"]), command=COMMANDS)
@example(name="ls372", command="KRDG? AA")  # found by this test: crashed int("AA")
@example(name="sampler", command="SAMP:COUN 1e400")  # OverflowError
@example(name="sampler", command="SAMP:COUN nan")
@example(name="qdac1", command="READ? (@1:)")
def test_virtual_instruments_answer_or_queue_an_error(devices, name, command):
    device = devices[name]
    if name == "sampler":
        device.count = min(device.count, 64)  # keep fuzzed acquisitions small
    if name == "clock" and "ADV" in command.upper():
        command = command.replace("ADV", "TIME?")  # don't fuzz a week of lab time into the chip
    device.errors.clear()
    answer = device.handle(command)
    assert answer is None or isinstance(answer, bytes)
    assert all(err.code < 0 for err in device.errors)
    # the engine's safety net (a Python exception turned into -224) must not be what answered
    assert not [e for e in device.errors if re.search(r"\w+(Error|Exception): ", e.message)], command


@settings(max_examples=300, deadline=None)
@given(text=st.one_of(st.text(max_size=30), st.from_regex(r"[-+]?\d+(\.\d+)?([eE][-+]?\d+)?", fullmatch=True)))
def test_float_reply_is_a_finite_float_or_a_reply_error(text):
    try:
        value = float_reply(text, "ls372", "KRDG? 6")
    except ReplyError as exc:
        assert "ls372" in str(exc) and "KRDG? 6" in str(exc)
    else:
        assert np.isfinite(value)


def _blocks():
    good = st.lists(st.floats(width=32, allow_nan=False), min_size=0, max_size=24).map(
        lambda xs: binary_block(struct.pack(f"<{len(xs)}f", *xs)) + b"\n"
    )
    damaged = st.tuples(good, st.integers(0, 40), st.binary(min_size=1, max_size=4)).map(
        lambda t: t[0][: t[1]] + t[2] + t[0][t[1] + len(t[2]) :]
    )
    cut = st.tuples(good, st.integers(0, 60)).map(lambda t: t[0][: t[1]])
    return st.one_of(good, damaged, cut, st.binary(max_size=60))


@settings(max_examples=500, deadline=None)
@given(raw=_blocks(), n_cells=st.integers(1, 4))
def test_block_parser_reads_exactly_or_raises_reply_error(raw, n_cells):
    try:
        payload = parse_block(raw, b"\n", "sampler", "READ?")
        data = float32_cells(payload, n_cells, "sampler", "READ?")
    except ReplyError as exc:
        assert "sampler" in str(exc)
        return
    head, length = block_length(raw[:11], "sampler", "READ?")
    assert len(raw) == head + length + 1 and data.shape[0] == n_cells
    assert data.tobytes(order="F") == raw[head : head + length]  # exactly the bytes sent, no guessing
