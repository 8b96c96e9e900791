"""Replay a recorded run against the virtual lab and say what came out different.

A measurement run stores its sequence, the station file's text, the virtual-lab
description and seed (:func:`labstack.measure.run_sequence`); a calibration is
recorded as a run of its own that also stores the state it started from, the
routines and their parameters, the runs it made and the values it fitted
(:mod:`labstack.session.record`). :func:`replay_run` builds the same station
again on a *fresh* virtual lab, re-executes the sequence or the calibration into
a new data directory, and compares (:mod:`labstack.session.compare`).

The report passes when every fitted value passes and, if the replay ran on the very
same virtual chip and seed (no ``truth``/``lab`` override) from a fresh lab, the
data are bit-for-bit identical: the virtual lab is deterministic, so any other
outcome means the code changed what it measures. On another chip (``truth=`` a
ground-truth file with one parameter moved) the data differ by design and the
report names the fitted parameters that moved beyond their uncertainties.
"""

from __future__ import annotations

import secrets
from pathlib import Path
from typing import Any

import yaml
from qcodes.instrument import Instrument

from labstack.calibrate import STATE_DIRNAME, CalibrationState
from labstack.data import Run, load_run, resolve_data_dir
from labstack.measure import run_sequence, step_from_json
from labstack.session.compare import (
    DEFAULT_RTOL,
    DEFAULT_Z_MAX,
    REPORT_JSON,
    REPORT_TEXT,
    ParameterDiff,
    ReplayReport,
    VariableDiff,
    compare_datasets,
    compare_results,
)
from labstack.session.record import session_of
from labstack.session.run import calibrate_station
from labstack.station import LabStation, station_path
from labstack.visa import open_station

REPLAYS_DIRNAME = "replays"

__all__ = [
    "REPORT_JSON",
    "REPORT_TEXT",
    "ParameterDiff",
    "ReplayError",
    "ReplayReport",
    "VariableDiff",
    "replay_run",
]


class ReplayError(ValueError):
    """A run that cannot be replayed (it lacks what a replay needs); the message says what."""


# --------------------------------------------------------------------- the lab
def fresh_lab(description: str | None, token: str) -> str:
    """``description`` with its ``instance`` replaced, so PyVISA builds a new lab."""
    text = (description or "").strip()
    instance = f"instance=replay-{token}"
    if text.endswith(".json"):
        return f"truth={text},{instance}"
    items = [i for i in (p.strip() for p in text.split(",")) if i and not i.startswith("instance=")]
    return ",".join([*items, instance])


def stored_description(recorded: str) -> str:
    """A recorded lab description as the chip it was: runs stored before the virtual chip
    had realism levels never name one, and they were made on the ideal chip.

    Descriptions recorded since name theirs (``realism=``), and one that gives a
    ground-truth file leaves it to the file (format 1 files are ideal chips).
    """
    text = recorded.strip()
    items = [i for i in (p.strip() for p in text.split(",")) if i]
    keys = {i.partition("=")[0].strip() for i in items}
    if text.endswith(".json") or "truth" in keys or "realism" in keys:
        return text
    return ",".join([*items, "realism=ideal"])


def _station_file(attrs: dict[str, Any], out_dir: Path, station: str | None, run_id: str) -> str:
    if station is not None:
        return station
    text = attrs.get("station_file") or ""
    if not text:
        raise ReplayError(
            f"run {run_id} does not record its station file (made before labstack recorded "
            "replay information?); pass station= / --station"
        )
    if _served(text):  # its sockets are another process's (maybe gone): rebuild its chip here
        return "virtual"
    path = out_dir / "station.yaml"
    path.write_text(text)
    return str(path)


def _served(station_text: str) -> bool:
    """Whether a stored station file is a served lab's (``labstack serve``)."""
    try:
        document = yaml.safe_load(station_text) or {}
    except yaml.YAMLError:
        return False
    return isinstance(document, dict) and bool((document.get("labstack") or {}).get("service"))


def _lab_for(attrs: dict[str, Any], truth: str | Path | None, lab: str | None, token: str) -> str:
    if truth is not None:
        return f"truth={Path(truth).resolve()},instance=replay-{token}"
    if lab is not None:
        return fresh_lab(lab, token)
    recorded = attrs.get("lab_description")
    if recorded is None:
        raise ReplayError(
            "the run was not made on the virtual lab (no lab description); give lab= / --lab "
            "or truth= / --truth to replay it against one"
        )
    if recorded.strip().endswith(".json") and not Path(recorded).exists():
        raise ReplayError(f"the run's chip file {recorded} is gone; give truth= / --truth")
    return fresh_lab(stored_description(recorded), token)


def _check_no_open_instruments(station_file: str) -> None:
    """QCoDeS names instruments globally: a replay cannot open 'qdac1' while it is open."""
    names = set((yaml.safe_load(station_path(station_file).read_text()) or {}).get("instruments", {}))
    busy = sorted(n for n in names if Instrument.exist(n))
    if busy:
        raise ReplayError(
            f"instrument(s) {', '.join(busy)} are open in this process; close that station "
            "first (station.close()) or replay from the command line"
        )


def _catch_up_clock(station: LabStation, start: float, notes: list[str]) -> None:
    """Start the replay at the original's simulated time, so ages and timeouts agree."""
    if start <= 0:
        return
    clock = station.clock
    lag = start - clock.now()
    if clock.is_virtual and lag > 0:
        clock.sleep(lag)
        notes.append(
            f"the original started {start:.4g} s into its lab's life; the replay lab was advanced "
            "to the same time, but its noise history differs, so data cannot be bit-for-bit equal"
        )


# --------------------------------------------------------------------- replay
def replay_run(
    run_id: str,
    data_dir: str | Path | None = None,
    *,
    out_dir: str | Path | None = None,
    truth: str | Path | None = None,
    lab: str | None = None,
    station: str | None = None,
    z_max: float = DEFAULT_Z_MAX,
    atol: float = 0.0,
    rtol: float = DEFAULT_RTOL,
    progress: bool = False,
    save: bool = True,
) -> ReplayReport:
    """Re-execute run ``run_id`` (a measurement or a calibration) on a fresh virtual lab.

    ``truth`` (a ground-truth JSON) or ``lab`` (a lab description) replays on another
    chip; ``station`` another station file. The replay's runs go to ``out_dir``
    (default ``<data_dir>/replays/<run_id>-<token>``); the report is saved there too.
    """
    root = resolve_data_dir(data_dir)
    original = load_run(run_id, root)
    attrs = original.attrs
    token = secrets.token_hex(3)
    where = Path(out_dir) if out_dir else root / REPLAYS_DIRNAME / f"{original.id}-{token}"
    where.mkdir(parents=True, exist_ok=True)
    station_file = _station_file(attrs, where, station, original.id)
    description = _lab_for(attrs, truth, lab, token)
    expect_identical = truth is None and lab is None and station is None
    notes: list[str] = []
    if attrs.get("clock") != "virtual":
        expect_identical = False
        notes.append("the original ran on wall-clock hardware: data are compared, not expected equal")
    if float(attrs.get("clock_start") or 0.0) > 0:
        expect_identical = False
    session = session_of(original)
    _check_no_open_instruments(station_file)
    st = open_station(station_file, lab=description)
    try:
        _catch_up_clock(st, float(attrs.get("clock_start") or 0.0), notes)
        if session is not None:
            report = _replay_calibration(original, session, st, root, where, progress)
        else:
            report = _replay_measurement(original, attrs, st, root, where, progress)
    finally:
        st.close()
    replay_id, variables, parameters, extra = report
    result = ReplayReport(
        original=original.id,
        replay=replay_id,
        kind="calibration" if session is not None else "measurement",
        lab=description,
        out_dir=str(where),
        expect_identical=expect_identical,
        z_max=z_max,
        atol=atol,
        rtol=rtol,
        variables=variables,
        parameters=(
            compare_results(*parameters, z_max=z_max, atol=atol, rtol=rtol) if parameters else []
        ),
        notes=notes + extra,
    )
    if save:
        result.save(where)
    return result


_Outcome = tuple[str, list[VariableDiff], tuple[dict[str, Any], dict[str, Any]] | None, list[str]]


def _replay_measurement(
    original: Run, attrs: dict[str, Any], station: LabStation, root: Path, out: Path, progress: bool
) -> _Outcome:
    if not attrs.get("sequence"):
        raise ReplayError(f"run {original.id} holds no sequence to replay")
    sequence = step_from_json(attrs["sequence"])
    again = run_sequence(
        sequence,
        station,
        name=original.name,
        data_dir=out,
        metadata={**original.metadata, "replay_of": original.id},
        progress=progress,
    )
    variables = compare_datasets(original.dataset(), again.dataset(), original.id, again.id)
    notes = []
    if any(not v.shape_match for v in variables):
        notes.append(
            "shapes differ: a setting made outside the sequence (e.g. a sample count) is not "
            "replayed; put it in the sequence as a Set step"
        )
    return again.id, variables, None, notes


def _replay_calibration(
    original: Run, session: dict[str, Any], station: LabStation, root: Path, out: Path, progress: bool
) -> _Outcome:
    start = original.attrs.get("calibration_state_start") or ""
    if start:
        CalibrationState.restore(out / STATE_DIRNAME, start)
    report = calibrate_station(
        station,
        data_dir=out,
        progress=progress,
        names=session.get("names"),
        force=bool(session.get("force")),
        params=session.get("params") or None,
    )
    again = session_of(load_run(report.run_id, out))
    assert again is not None
    notes: list[str] = []
    variables: list[VariableDiff] = []
    ours, theirs = session["runs"], again["runs"]
    if len(ours) != len(theirs):
        notes.append(f"the original made {len(ours)} runs, the replay {len(theirs)}")
    for a_id, b_id in zip(ours, theirs, strict=False):
        try:
            a = load_run(a_id, root)
        except KeyError:
            notes.append(f"original run {a_id} is not stored next to the calibration: not compared")
            continue
        variables += compare_datasets(a.dataset(), load_run(b_id, out).dataset(), a_id, b_id)
    return report.run_id, variables, (session["results"], again["results"]), notes
