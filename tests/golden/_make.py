"""Rewrite the golden files (run from the repository root: ``python -m tests.golden._make``).

Only when a change to what labstack measures is intended: the golden tests exist to
notice such changes. Writes ``tests/golden/runs/`` (a 4-cell calibration and a small
measurement, each on a fresh virtual lab) and ``tests/golden/scpi_session.jsonl.gz``.
The station snapshot is replaced by a stub in the stored runs (it is ~800 kB of
QDAC-II channel settings that a replay does not need).
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import zarr

from labstack.measure import run_sequence
from labstack.session import calibrate_station
from labstack.visa import finish_recording, open_station, record_station
from tests.golden.scripts import (
    CALIBRATION_NAMES,
    CALIBRATION_PARAMS,
    LAB,
    measurement,
    scpi_session,
)

HERE = Path(__file__).parent
RUNS = HERE / "runs"
TRANSCRIPT = HERE / "scpi_session.jsonl.gz"


def strip_snapshot(run_dir: Path) -> None:
    store = run_dir / "data.zarr"
    group = zarr.open_group(store, mode="r+", zarr_format=2)
    if "snapshot" in group.attrs:
        group.attrs["snapshot"] = json.dumps({"stripped": "golden run: snapshot removed to keep it small"})
    zarr.consolidate_metadata(group.store)


def main() -> None:
    shutil.rmtree(RUNS, ignore_errors=True)
    station = open_station("virtual", lab=LAB)
    try:
        calibrate_station(
            station, data_dir=RUNS, progress=False, names=CALIBRATION_NAMES, params=CALIBRATION_PARAMS
        )
    finally:
        station.close()
    station = open_station("virtual", lab=f"{LAB},instance=golden-measurement")
    try:
        run_sequence(measurement(), station, name="golden_sweep", data_dir=RUNS, progress=False)
    finally:
        station.close()
    shutil.rmtree(RUNS / "calibration_state")
    for run_dir in RUNS.iterdir():
        strip_snapshot(run_dir)
    station = record_station("virtual", TRANSCRIPT, lab=f"{LAB},instance=golden-scpi")
    try:
        scpi_session(station)
    finally:
        finish_recording(station)
    size = sum(p.stat().st_size for p in HERE.rglob("*") if p.is_file())
    print(f"golden files: {size / 1024:.0f} kB")


if __name__ == "__main__":
    main()
