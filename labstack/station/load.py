"""Open a station file: the QCoDeS station, its limits and safety layer, as one LabStation.

Everything in the file is checked (:func:`~labstack.station.files.read_station_file`)
before any instrument is touched. Limits are added as extra validators on the
QCoDeS parameters, so a value outside them is refused by the parameter itself,
whatever path the call comes through, before any SCPI is sent.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

from pyvisa.constants import StatusCode
from pyvisa.errors import VisaIOError
from pyvisa.highlevel import open_visa_library
from qcodes.station import Station
from qcodes.validators import Numbers

from labstack.clock import Clock, WallClock
from labstack.safety.install import StationSafety, install_safety
from labstack.station.files import (
    VISALIB_SUFFIX,
    StationConfigError,
    StationFile,
    read_station_file,
)
from labstack.station.lab_station import LabStation, Provenance, close_instruments
from labstack.station.parameters import find_parameter
from labstack.station.roles import roles_of
from labstack.station.snapshot_memo import remember_station_snapshots


def load_station(
    name_or_path: str | Path = "virtual",
    *,
    text: str | None = None,
    source: str | None = None,
    lab: str | None = None,
    wrap_visalib: Callable[[str, str], str] | None = None,
) -> LabStation:
    """Build the :class:`LabStation` of a station file (a path, or a shipped station's name).

    ``text`` replaces the file's content (``source`` names it in errors and
    provenance); ``lab`` replaces the virtual-lab description (the part before
    ``@labstack`` in every instrument's ``visalib``); ``wrap_visalib(instrument,
    visalib)`` may replace each instrument's VISA library specification.
    Stations for virtual chips of any size: :func:`labstack.visa.open_station`.
    """
    spec = read_station_file(
        name_or_path, text=text, source=source, lab=lab, wrap_visalib=wrap_visalib
    )
    qcodes = Station()
    qcodes.load_config(spec.qcodes_yaml())
    try:
        for name in spec.instruments:
            _load_instrument(qcodes, spec, name)
        _check_chip_lines(qcodes, spec)
        _apply_limits(qcodes, spec)
        layout = spec.layout
        clock: Clock = qcodes.components[layout.clock] if layout.clock else WallClock()
        safety = _install_safety(qcodes, spec, clock)
        # every run snapshots the station; a parameter that did not change is not rebuilt
        remember_station_snapshots(qcodes.components.values())
    except Exception:
        close_instruments(qcodes)
        raise
    service = spec.service()
    provenance = Provenance(
        source=str(spec.path),
        station_text=spec.text,
        lab=lab if lab is not None else spec.lab(),
        service=service,
    )
    station = LabStation(qcodes, layout=layout, clock=clock, safety=safety, provenance=provenance)
    if service is not None:  # every run records which served lab, at which clock speed, it ran on
        station.run_metadata["lab_service"] = served_lab_metadata(service)
    return station


def _load_instrument(qcodes: Station, spec: StationFile, name: str) -> None:
    """Open one instrument; one the virtual lab has no twin for is named with its roles."""
    try:
        visalib = spec.raw_socket_visalib(name)
        if visalib is not None:
            host, port = _raw_endpoint(spec, name, visalib)
            qcodes.load_instrument(name, address=host, port=port)
        else:
            qcodes.load_instrument(name)
    except VisaIOError as exc:
        visalib = str((spec.instruments[name].get("init") or {}).get("visalib", ""))
        if exc.error_code != StatusCode.error_resource_not_found or not visalib.endswith(VISALIB_SUFFIX):
            raise
        raise _no_twin(spec, name) from None


def _no_twin(spec: StationFile, name: str, why: str = "") -> StationConfigError:
    roles = roles_of(spec.layout.roles(), name) or ["no role in labstack:"]
    kind = str(spec.instruments[name].get("type", "")).rsplit(".", 1)[-1]
    where = spec.instruments[name].get("address")
    if "port" in spec.instruments[name]:
        where = f"{where}, port {spec.instruments[name]['port']}"
    return StationConfigError(
        f"{spec.where('instruments', name)}: instrument '{name}' ({kind}) has no virtual twin in the "
        f"virtual lab (address {where}); it was meant to be: "
        f"{'; '.join(roles)}. Give it a twin (labstack/sim/instruments/) or a hardware address.{why}"
    )


def _raw_endpoint(spec: StationFile, name: str, visalib: str) -> tuple[str, int]:
    """Where a raw-socket instrument's driver connects: the loopback socket its VISA library
    (the virtual lab, a transcript recorder or player) serves it on."""
    entry = spec.instruments[name]
    library = open_visa_library(visalib)
    serve = getattr(library, "raw_socket", None)
    if serve is None:
        raise StationConfigError(
            f"{spec.where('instruments', name)}: instrument '{name}' speaks over a raw TCP socket "
            f"(port: {entry.get('port')}); its visalib {visalib!r} cannot serve one: drop init.visalib "
            "to reach the hardware at its address and port"
        )
    try:
        return serve(str(entry.get("address", "")), int(entry["port"]))
    except KeyError as exc:
        raise _no_twin(spec, name, f" ({exc.args[0] if exc.args else exc})") from None


def served_lab_metadata(service: dict[str, Any]) -> dict[str, Any]:
    """What a run made on a served lab records of it: the lab, its clock speed and, when the
    station file names it, the service file whose clock a dashboard judges staleness by."""
    out: dict[str, Any] = {"lab": service.get("lab"), "speed": service.get("speed", 0.0)}
    if service.get("service_file"):
        out["service_file"] = str(service["service_file"])
    return out


def close_station(station: LabStation | Station) -> None:
    """Close every instrument of a station (QCoDeS keeps a global registry otherwise)."""
    if isinstance(station, LabStation):
        station.close()
    else:
        close_instruments(station)


def _check_chip_lines(qcodes: Station, spec: StationFile) -> None:
    """Every bias and coupler line the file names exists on its instrument, checked once the
    instruments are open and before anything is set: a file that wires more cells than an
    instrument has lines (a DAC array sized by its chip) is refused with its key and line."""
    layout = spec.layout
    for key, names in (("bias", layout.bias), ("couplers", layout.couplers)):
        for name in names:
            try:
                find_parameter(qcodes, name)
            except LookupError:
                instrument = name.split(".")[0]
                raise StationConfigError(
                    f"{spec.where('labstack', 'chip', key)}: labstack.chip.{key}: {name} is not a line of "
                    f"instrument '{instrument}' ({_lines_of(qcodes.components.get(instrument))}); "
                    f"the file wires {layout.n_cells} cells"
                ) from None


def _lines_of(instrument: Any) -> str:
    """What an instrument offers, in a few words: its channels' first and last names and count."""
    channels = list(getattr(instrument, "submodules", {}) or {})
    if not channels:
        return "it has no channels"
    return f"its {len(channels)} channels run {channels[0]} .. {channels[-1]}"


def _apply_limits(qcodes: Station, spec: StationFile) -> None:
    for name, (lo, hi) in spec.layout.limits.items():
        try:
            parameter = find_parameter(qcodes, name)
        except LookupError as exc:
            raise StationConfigError(f"{spec.where('labstack', 'limits')}: labstack.limits: {exc}") from None
        parameter.add_validator(Numbers(lo, hi))


def _install_safety(qcodes: Station, spec: StationFile, clock: Clock) -> StationSafety:
    """Ramps, SCPI guards, interlocks and retries (:mod:`labstack.safety.install`)."""
    layout = spec.layout
    for section, names in (("ramps", layout.safety.ramps), ("suspenders", [s.signal for s in layout.safety.suspenders])):
        for name in names:
            try:
                find_parameter(qcodes, name)
            except LookupError as exc:
                raise StationConfigError(f"{spec.where('labstack', section)}: labstack.{section}: {exc}") from None
    if layout.safety.interlocks != type(layout.safety.interlocks)() and not layout.heater:
        raise StationConfigError(
            f"{spec.where('labstack', 'interlocks')}: labstack.interlocks: needs thermometry.heater"
        )

    def find(name: str) -> Any:
        return find_parameter(qcodes, name)

    return install_safety(qcodes.components, layout.safety, layout.limits, layout.heater, clock, find)
