"""Stations opened through labstack's backends: virtual chips of any size, SCPI transcripts.

:func:`open_station` is how a notebook, the command line, replay and batch work
open a station: a station file (or the shipped ``virtual``) and, for the virtual
lab, the description of the chip (``"seed=7,cells=64"``).

The shipped ``station_configs/virtual.yaml`` describes the default 16-cell chain.
A virtual chip of another size or topology needs more DACs (24 channels each) and
other coupler pairs, so :func:`virtual_station_yaml` writes the matching station
from the same wiring rule the virtual lab uses (:class:`labstack.sim.lab.Wiring`),
with the same drivers, limits and safety sections.

:func:`record_station` and :func:`playback_station` open a station with every
instrument wrapped by the transcript backends (:mod:`labstack.visa.transcript`).
"""

from __future__ import annotations

import secrets
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path
from typing import Any

import yaml

from labstack.sim.lab import DAC_CHANNELS, VirtualLab, Wiring
from labstack.station import (
    LabStation,
    close_station,
    load_station,
    read_station_file,
    station_path,
)
from labstack.visa.raw_socket import raw_resource
from labstack.visa.transcript import (
    PLAYBACK_BACKEND,
    RECORD_BACKEND,
    PlaybackVisaLibrary,
    RecordingVisaLibrary,
)

WrapVisalib = Callable[[str, str], str]

BIAS_LIMIT_V = 1.5
COUPLER_LIMIT_V = 1.0

_DRIVERS = {
    "qdac": "qcodes_contrib_drivers.drivers.QDevil.QDAC2.QDac2",
    "ls372": "qcodes.instrument_drivers.Lakeshore.LakeshoreModel372",
    "sampler": "labstack.drivers.sampler.LabstackSampler",
    "clock": "labstack.drivers.lab_clock.VirtualLabClock",
}


def _ranges(wiring: Wiring, count: int, line) -> list[str]:
    """Channel ranges like ``qdac1.ch01-ch24`` covering ``count`` lines."""
    by_dac: dict[int, list[int]] = {}
    for k in range(count):
        dac, ch = line(k)
        by_dac.setdefault(dac, []).append(ch)
    return [f"qdac{dac}.ch{min(chs):02d}-ch{max(chs):02d}" for dac, chs in by_dac.items()]


def _shipped_virtual() -> dict:
    return yaml.safe_load(station_path("virtual").read_text())


def _ramp_specs(ramps: dict) -> tuple[dict | None, dict | None]:
    """The shipped station's ramp for bias lines (qdac1) and for coupler lines (the rest)."""
    bias = next((v for k, v in ramps.items() if str(k).startswith("qdac1.")), None)
    coupler = next((v for k, v in ramps.items() if not str(k).startswith("qdac1.")), None)
    return bias, coupler or bias


def virtual_station_yaml(description: str) -> str:
    """Station YAML for the virtual chip a lab description names (e.g. ``cells=64,seed=3``)."""
    truth, _ = VirtualLab.truth_from_description(description)
    n_couplers = truth.couplers.n if truth.couplers is not None else 0
    wiring = Wiring(truth.n_cells, n_couplers)
    visalib = f"{description}@labstack"
    instruments: dict[str, dict] = {}
    for dac in range(1, wiring.n_dacs + 1):
        instruments[f"qdac{dac}"] = {
            "type": _DRIVERS["qdac"],
            "address": f"TCPIP0::qdac{dac}.virtual::5025::SOCKET",
            "init": {"visalib": visalib},
        }
    for name, port in (("ls372", 7777), ("sampler", 5025), ("clock", 5025)):
        instruments[name] = {
            "type": _DRIVERS[name],
            "address": f"TCPIP0::{name}.virtual::{port}::SOCKET",
            "init": {"visalib": visalib},
        }
    bias = _ranges(wiring, truth.n_cells, wiring.bias_line)
    couplers = _ranges(wiring, n_couplers, wiring.coupler_line)
    limits = {f"{r}.dc_constant_V": [-BIAS_LIMIT_V, BIAS_LIMIT_V] for r in bias}
    limits.update({f"{r}.dc_constant_V": [-COUPLER_LIMIT_V, COUPLER_LIMIT_V] for r in couplers})
    shipped = _shipped_virtual()["labstack"]
    bias_ramp, coupler_ramp = _ramp_specs(shipped.get("ramps") or {})
    ramps = {f"{r}.dc_constant_V": dict(bias_ramp) for r in bias} if bias_ramp else {}
    if coupler_ramp:
        ramps.update({f"{r}.dc_constant_V": dict(coupler_ramp) for r in couplers})
    chip: dict = {"cells": truth.n_cells, "bias": bias, "bias_parameter": "dc_constant_V"}
    if couplers:
        chip["couplers"] = couplers
        chip["coupler_pairs"] = [[int(i), int(j)] for i, j in truth.couplers.pairs]
    document = {
        "instruments": instruments,
        "labstack": {
            "chip": chip,
            "readout": "sampler",
            "thermometry": {
                "instrument": "ls372",
                "mixing_chamber": "ch06",
                "chip": "ch08",
                "heater": "sample_heater",
            },
            "clock": "clock",
            "limits": limits,
        },
    }
    # the same safety as the shipped virtual station: ramps, interlocks, safe state, ...
    if ramps:
        document["labstack"]["ramps"] = ramps
    for key, value in shipped.items():
        if key not in ("chip", "readout", "thermometry", "clock", "limits", "ramps"):
            document["labstack"][key] = value
    header = f"# generated by labstack for the virtual chip '{description}' ({DAC_CHANNELS} channels per DAC)\n"
    return header + yaml.safe_dump(document, sort_keys=False)


def check_lab_description(lab: str) -> None:
    """Read the chip a lab description names (its truth file too), raising what is wrong
    with it; nothing is built or opened, so a command can check it before taking locks."""
    VirtualLab.truth_from_description(lab)


def fits_default_virtual(lab: str) -> bool:
    """Whether the shipped virtual.yaml (16-cell chain) wires the chip ``lab`` describes."""
    truth, _ = VirtualLab.truth_from_description(lab)
    return truth.n_cells == 16 and truth.topology == "chain"


def open_station(
    station: str | Path = "virtual",
    *,
    lab: str | None = None,
    wrap_visalib: WrapVisalib | None = None,
) -> LabStation:
    """Open ``station`` (a file, or a shipped station's name); ``lab`` names the virtual chip.

    With the shipped ``virtual`` station and a chip it does not wire (another size
    or topology), the station for that chip is generated
    (:func:`virtual_station_yaml`). Every input is checked before any instrument opens.
    """
    if lab is not None and station_path(station) == station_path("virtual") and not fits_default_virtual(lab):
        opened = load_station(
            station,
            text=virtual_station_yaml(lab),
            source=f"<virtual station for '{lab}'>",
            lab=lab,
            wrap_visalib=wrap_visalib,
        )
    else:
        opened = load_station(station, lab=lab, wrap_visalib=wrap_visalib)
    return _explicit_provenance(opened)


def _explicit_provenance(station: LabStation) -> LabStation:
    """Record the virtual chip with its seed, size and realism written out
    (:meth:`VirtualLab.recorded_description`), so a run replays the same chip
    whatever the defaults are then."""
    origin = station.provenance
    if origin.lab is not None:
        station.provenance = replace(origin, lab=VirtualLab.recorded_description(origin.lab))
    return station


# ------------------------------------------------------------------- stations
def _visa_libraries(station: Any) -> list[Any]:
    out = []
    for component in station.components.values():
        handle = getattr(component, "visa_handle", None)
        if handle is not None and handle.visalib not in out:
            out.append(handle.visalib)
    return out


def _resource_map(station: Any) -> dict[str, str]:
    return {
        c.visa_handle.resource_name: name
        for name, c in station.components.items()
        if getattr(c, "visa_handle", None) is not None
    }


def record_station(
    station_file: str | Path, transcript: str | Path, *, lab: str | None = None
) -> LabStation:
    """Load ``station_file`` with every instrument's SCPI recorded to ``transcript``.

    The instruments talk to whatever their station file says (hardware, or the
    virtual lab ``lab``); the transcript is complete once the station is closed.
    """
    path = Path(transcript).resolve()
    token = secrets.token_hex(4)  # a new library (and a new file) even for a reused path
    station = open_station(station_file, lab=lab, wrap_visalib=lambda _n, inner: f"{path}#{token}|{inner}@{RECORD_BACKEND}")
    names = {**_resource_map(station), **_raw_resource_map(station_file)}
    for lib in _visa_libraries(station):  # raw-socket instruments share their station's recorder
        if isinstance(lib, RecordingVisaLibrary):
            lib.annotate(names)
    return station


def _raw_resource_map(station_file: str | Path) -> dict[str, str]:
    """Transcript resource -> instrument name of the station file's raw-socket instruments."""
    spec = read_station_file(station_file)
    return {
        raw_resource(str(entry.get("address", "")), int(entry["port"])): name
        for name, entry in spec.instruments.items()
        if isinstance(entry, dict) and "port" in entry
    }


def playback_station(station_file: str | Path, transcript: str | Path) -> LabStation:
    """Load ``station_file`` with every instrument answered from ``transcript``; no hardware."""
    path = Path(transcript).resolve()
    token = secrets.token_hex(4)  # fresh queues even if this transcript was played before
    return load_station(station_file, wrap_visalib=lambda _n, _inner: f"{path}#{token}@{PLAYBACK_BACKEND}")


def verify_playback(station: Any) -> None:
    """Raise :class:`TranscriptMismatch` unless the drivers sent exactly the transcript."""
    libraries = [lib for lib in _visa_libraries(station) if isinstance(lib, PlaybackVisaLibrary)]
    if not libraries:
        raise ValueError("this station is not playing back a transcript")
    for lib in libraries:
        lib.verify()


def finish_recording(station: Any) -> Path:
    """Close the station's transcript file (the station stays usable for nothing else)."""
    libraries = [lib for lib in _visa_libraries(station) if isinstance(lib, RecordingVisaLibrary)]
    close_station(station)
    for lib in libraries:
        lib.close_transcript()
    if not libraries:
        raise ValueError("this station is not recording a transcript")
    return libraries[0].path
