"""SCPI transcripts: record a session, replay the unmodified drivers without hardware."""

from __future__ import annotations

import secrets
from pathlib import Path

import numpy as np
import pytest
from qcodes.instrument import Instrument

from labstack.drivers.sampler import LabstackSampler
from labstack.visa import (
    TranscriptMismatch,
    finish_recording,
    playback_station,
    record_station,
    verify_playback,
)


def session(station) -> tuple[float, np.ndarray]:
    """What a lab script does: set biases, read the fridge, sample the cells, wait."""
    station.qdac1.ch01.dc_constant_V(0.1)
    station.qdac1.ch02.dc_constant_V(-0.2)
    temperature = station.ls372.ch06.temperature()
    station.sampler.n_samples(8)
    samples = station.sampler.samples()
    station.clock.sleep(1.0)
    return temperature, samples


@pytest.fixture
def transcript(tmp_path: Path) -> tuple[Path, tuple[float, np.ndarray]]:
    # an instance of its own: tests.conftest imported here counts instances apart from pytest's conftest
    lab = f"seed=7,cells=4,instance=transcript-{secrets.token_hex(4)}"
    station = record_station("virtual", tmp_path / "session.jsonl.gz", lab=lab)
    try:
        recorded = session(station)
    finally:
        path = finish_recording(station)
    yield path, recorded
    Instrument.close_all()


def test_drivers_replay_a_transcript_without_hardware(transcript):
    path, (temperature, samples) = transcript
    station = playback_station("virtual", path)
    try:
        t, x = session(station)
        verify_playback(station)
    finally:
        station.close()
    assert t == temperature and np.array_equal(x, samples)


def test_a_driver_change_that_alters_a_command_is_caught(transcript, monkeypatch):
    path, _ = transcript

    def changed_acquire(self):  # a driver "upgrade" that asks for the data differently
        return self.visa_handle.query_binary_values("FETCH?", datatype="f", container=np.array)

    monkeypatch.setattr(LabstackSampler, "acquire", changed_acquire)
    station = playback_station("virtual", path)
    try:
        with pytest.raises(TranscriptMismatch) as caught:
            session(station)
    finally:
        station.close()
    message = str(caught.value)
    assert "instrument 'sampler'" in message and "line " in message and "exchange " in message
    assert "expected write 'READ?'" in message and "got write 'FETCH?'" in message


def test_commands_left_unsent_are_reported(transcript):
    path, _ = transcript
    station = playback_station("virtual", path)
    try:
        station.qdac1.ch01.dc_constant_V(0.1)
        with pytest.raises(TranscriptMismatch, match=r"(?s)qdac1.*never happened.*sour2:volt.*sampler.*SAMP:COUN 8"):
            verify_playback(station)
    finally:
        station.close()
