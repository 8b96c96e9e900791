"""No backdoor to the truth: calibrations see the chip only through what a real lab's instruments say.

* No virtual instrument answers with the seed or any ground-truth quantity over SCPI
  (``LAB:SEED?`` is gone), and the clock's driver asks for time only.
* A run's provenance takes the lab description from the lab object (the station's), with
  its realism level written out, and the seed is read from that text, never asked of an
  instrument; a description stored before realism levels existed replays as the ideal chip.
* Every routine's ``fit`` gives the same result on the dataset it was given stripped of
  all lab metadata (lab description, seed, station file, snapshot): no fit reads them.
  (That calibrations, fits and drivers cannot import the simulator is an import contract:
  tests/test_import_contracts.py.)
"""

from __future__ import annotations

import math

import numpy as np
import pytest
import pyvisa

from labstack.data import list_runs
from labstack.session import calibrate_station, routines
from labstack.session.replay import stored_description
from labstack.visa import open_station
from tests.conftest import lab_description, lab_of

#: dataset attributes that say which lab, chip or station a run was made on
LAB_METADATA = ("lab_description", "lab_seed", "seed", "station_file", "station_source", "snapshot", "git_revision")


def test_no_instrument_answers_with_the_seed_or_the_truth():
    description = lab_description(seed=4321, cells=4)
    lib = pyvisa.ResourceManager(f"{description}@labstack").visalib
    for name in lib.instruments.names():
        device = lib.instruments.get(name)
        for query in ("LAB:SEED?", "LAB:CELL?", "LAB:CELLS?", "LAB:TRUTH?"):
            assert device.handle(query) is None, (name, query)
            assert device.errors.pop().code == -113  # undefined header, as on hardware
    clock = lib.instruments.get("clock")
    answers = [clock.handle(q) for q in ("*IDN?", "CLOC:TIME?", "CLOC:UTC?")]
    assert all(a is not None and b"4321" not in a for a in answers)


def test_the_clock_driver_knows_time_only(virtual_station):
    station, _ = virtual_station(seed=9, cells=4)
    assert set(station.clock.parameters) == {"IDN", "timeout", "time"}


def test_provenance_is_the_lab_description_with_its_realism_written_out(virtual_station, tmp_path):
    from labstack.measure import Read, run_sequence

    station, lab = virtual_station(seed=9, cells=4)
    run = run_sequence(Read("sampler.samples", name="samples"), station, name="one", data_dir=tmp_path, progress=False)
    description = run.attrs["lab_description"]
    assert "seed=9" in description and "cells=4" in description and "realism=realistic" in description
    assert run.attrs["lab_seed"] == 9 == lab.seed  # read from the description's text


def test_the_default_chip_is_recorded_with_its_seed_size_and_realism():
    default = open_station("virtual")
    try:
        assert default.provenance.lab == "seed=1234,cells=16,realism=realistic"
        assert default.seed == 1234
    finally:
        default.close()


@pytest.mark.parametrize(
    "recorded,replayed",
    [
        ("seed=7,cells=4", "seed=7,cells=4,realism=ideal"),  # stored before realism: the ideal chip
        ("", "realism=ideal"),
        ("seed=7,cells=4,realism=realistic", "seed=7,cells=4,realism=realistic"),
        ("truth=/x/chip.json,instance=a", "truth=/x/chip.json,instance=a"),  # the file says
    ],
)
def test_stored_descriptions_replay_as_the_chips_they_were(recorded, replayed):
    assert stored_description(recorded) == replayed


@pytest.fixture(scope="module")
def fit_inputs(tmp_path_factory):
    """Every routine's fit input from a cold calibration of a small realistic chip."""
    description = lab_description(seed=5, cells=4)
    station = open_station("virtual", lab=description)
    lab_of(description)
    data_dir = tmp_path_factory.mktemp("stripped")
    seen: dict[str, tuple] = {}
    modules = routines()
    originals = {name: module.fit for name, module in modules.items()}

    def capture(name):
        def fit(dataset, params=None):
            seen[name] = (dataset.copy(deep=True), params)
            return originals[name](dataset, params)

        return fit

    try:
        for name, module in modules.items():
            module.fit = capture(name)
        calibrate_station(station, data_dir=data_dir, progress=False)
    finally:
        for name, module in modules.items():
            module.fit = originals[name]
        station.close()
    assert set(seen) == set(modules)
    assert any(any(k in ds.attrs for k in LAB_METADATA) for ds, _ in seen.values())
    assert list_runs(data_dir)
    return seen


def _values(change) -> dict[str, object]:
    return {k: (u.value, u.stderr, u.valid) for k, u in change.updates.items()}


def _same(a, b) -> bool:
    if isinstance(a, list | tuple | np.ndarray) or isinstance(b, list | tuple | np.ndarray):
        return np.array_equal(np.asarray(a, dtype=object), np.asarray(b, dtype=object))
    if isinstance(a, float) and isinstance(b, float):
        return a == b or (math.isnan(a) and math.isnan(b))
    return a == b


@pytest.mark.parametrize("name", sorted(routines()))
def test_every_fit_works_on_its_data_stripped_of_lab_metadata(fit_inputs, name):
    module = routines()[name]
    dataset, params = fit_inputs[name]
    stripped = dataset.copy(deep=True)
    for key in list(stripped.attrs):
        if key in LAB_METADATA or key.startswith("version_"):
            del stripped.attrs[key]
    for var in stripped.variables.values():
        for key in list(var.attrs):
            if key in LAB_METADATA:
                del var.attrs[key]
    with_meta = _values(module.update(module.fit(dataset, params), params))
    without = _values(module.update(module.fit(stripped, params), params))
    assert with_meta.keys() == without.keys()
    for key in with_meta:
        assert all(_same(x, y) for x, y in zip(with_meta[key], without[key], strict=True)), key
