"""The lab object: one typed thing that holds a station and everything labstack knows of it.

A QCoDeS ``Station`` knows its instruments. labstack also needs to know how the
chip is wired (:class:`~labstack.station.files.ChipLayout`), which clock the lab
runs on, what the safety layer installed, how runs are paused and aborted, and
where the station came from (for replays). :class:`LabStation` holds all of it;
it is what :func:`~labstack.station.load_station` returns and what the runner,
the calibration engine, replay and the command line are given. Nothing is ever
attached to the QCoDeS station itself.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np
from qcodes.instrument import Instrument
from qcodes.parameters import ParameterBase
from qcodes.station import Station

from labstack.clock import Clock, WallClock
from labstack.safety.control import RunControl
from labstack.safety.install import StationSafety
from labstack.station.files import ChipLayout, StationConfigError
from labstack.station.parameters import ParamRef, find_parameter


@dataclass(frozen=True)
class Provenance:
    """Where a station came from: what a replay needs to build it again.

    ``station_text`` is the station file as it was read; ``lab`` the virtual-lab
    description (``""`` for the default chip, None on hardware); ``service`` the
    ``labstack.service`` section of a served lab's station (None otherwise): its
    clock runs on by itself, at ``service["speed"]`` lab seconds per wall second.
    """

    source: str = ""
    station_text: str = ""
    lab: str | None = None
    service: Mapping[str, Any] | None = None


class LabStation:
    """A QCoDeS station with its chip layout, clock, safety layer, run control and provenance.

    ``station.components``, ``station.parameter("qdac1.ch01.dc_constant_V")`` and
    ``station.instrument("ls372")`` reach the instruments; ``station.ls372`` does too,
    as on a QCoDeS station. ``station.qcodes`` is the QCoDeS station itself.
    """

    def __init__(
        self,
        qcodes: Station,
        *,
        layout: ChipLayout | None = None,
        clock: Clock | None = None,
        safety: StationSafety | None = None,
        provenance: Provenance | None = None,
    ) -> None:
        self.qcodes = qcodes
        self._layout = layout
        self.clock: Clock = clock if clock is not None else WallClock()
        self.safety = safety
        self.provenance = provenance if provenance is not None else Provenance()
        #: metadata stamped on every run made on this station (e.g. the chip id in a batch);
        #: a run's own metadata wins over a key of the same name
        self.run_metadata: dict[str, Any] = {}
        config = safety.config if safety is not None else None
        self.control = RunControl(
            config.suspenders if config is not None else [],
            max_temperature_K=config.interlocks.max_temperature_K if config is not None else None,
            thermometer=layout.thermometer_mc if layout is not None else None,
            read=self.read,
            safe_state=self.safe_state,
        )

    @classmethod
    def of(cls, station: LabStation | Station | None, *, clock: Clock | None = None) -> LabStation:
        """``station`` itself, or a bare QCoDeS station (None: an empty one) as a LabStation
        on wall time unless ``clock`` is given.

        A toy QCoDeS station in a test or a notebook has no layout or safety; it can
        still run sequences (of parameter objects, with no station at all).
        """
        if isinstance(station, LabStation):
            return station
        return cls(station if station is not None else Station(), clock=clock)

    # ------------------------------------------------------------- the chip
    @property
    def layout(self) -> ChipLayout:
        """How the chip is wired; only a station loaded from a station file has one."""
        if self._layout is None:
            raise StationConfigError(
                "this station has no chip layout (it was not loaded from a station file "
                "with a 'labstack:' section)"
            )
        return self._layout

    @property
    def has_layout(self) -> bool:
        return self._layout is not None

    # ------------------------------------------------------------- instruments
    @property
    def components(self) -> Mapping[str, Any]:
        return self.qcodes.components

    def parameter(self, name: ParamRef) -> ParameterBase:
        """The parameter a dotted name resolves to (:func:`~labstack.station.find_parameter`)."""
        return find_parameter(self, name)

    def instrument(self, name: str) -> Any:
        try:
            return self.qcodes.components[name]
        except KeyError:
            have = ", ".join(sorted(self.qcodes.components))
            raise StationConfigError(f"the station has no instrument {name!r} (it has: {have})") from None

    def read(self, name: str) -> float:
        """The value of a numeric parameter, by dotted name (what suspenders watch)."""
        return float(self.parameter(name).get())

    def __getattr__(self, name: str) -> Any:
        # only called when normal lookup fails: instruments by name, as on a QCoDeS station
        if name.startswith("_"):
            raise AttributeError(name)
        components = self.__dict__.get("qcodes").components if "qcodes" in self.__dict__ else {}
        if name in components:
            return components[name]
        raise AttributeError(f"LabStation has no attribute or instrument {name!r}")

    def snapshot(self, update: bool | None = False) -> dict[str, Any]:
        return self.qcodes.snapshot(update=update)

    # ------------------------------------------------------------- provenance
    @property
    def seed(self) -> int | None:
        """The ``seed=`` of the virtual-lab description, read from its text (None on hardware,
        and for a chip given as a ground-truth file).

        Never asked of an instrument: no instrument answers with anything of the chip's truth.
        """
        return description_seed(self.provenance.lab)

    # ------------------------------------------------------------- safety
    def line_limits(self, name: str) -> tuple[float, float]:
        """The safety guard's ``(low, high)`` in volts for line ``name`` (``(-inf, inf)``
        where it guards none). Routines keep what they ask for within these, so a lab whose
        limits are narrower than a routine's defaults gets the widest swing it allows, not
        a refused command halfway through a calibration."""
        channel = self.safety.channels.get(str(name)) if self.safety is not None else None
        if channel is None:
            return (-math.inf, math.inf)
        return (float(channel.low), float(channel.high))

    def safe_state(self) -> list[str]:
        """Ramp guarded DACs to the safe value and switch the heater off; returns what failed.

        A DAC array's elements go together, one ramped block per step; a line it failed to
        move is tried again on its own. Keeps going past a failing instrument, so one dead
        DAC does not leave the heater on.
        """
        if self.safety is None:
            return ["station has no labstack safety configuration"]
        safe = self.safety.config.safe_state
        problems: list[str] = []
        layout = self._layout
        heater = layout.heater if layout is not None else None
        if safe.heater_off and heater and layout is not None:
            try:
                if layout.heater_control == "closed_loop":  # a Triton: loop off, no manual power
                    self.parameter(str(layout.heater_mode)).set("off")
                    self.components[heater.split(".")[0]].write("SET:DEV:H1:HTR:SIG:POWR:0")
                else:
                    self.parameter(f"{heater}.output_range").set("off")
            except Exception as exc:
                problems.append(f"{heater}: {type(exc).__name__}: {exc}")
        done: set[str] = set()
        for instrument, array in self.safety.arrays.items():  # a DAC array: a few ramped blocks
            try:
                target = np.asarray(array.parameter.get(), dtype=float)
                for i, channel in array.channels.items():
                    if channel.ramp is not None:
                        target[i] = min(max(safe.dac_V, channel.low), channel.high)
                array.parameter.set(target)
                done.update(channel.name for channel in array.channels.values())
            except Exception as exc:
                problems.append(f"{instrument}: {type(exc).__name__}: {exc}")
        for name, channel in self.safety.channels.items():
            if channel.ramp is None or name in done:
                continue
            target = min(max(safe.dac_V, channel.low), channel.high)
            try:
                self.parameter(name).set(target)
            except Exception as exc:
                problems.append(f"{name}: {type(exc).__name__}: {exc}")
        return problems

    # ------------------------------------------------------------- lifetime
    def close(self) -> None:
        """Close every instrument (QCoDeS keeps a global registry otherwise)."""
        close_instruments(self.qcodes)

    def __enter__(self) -> LabStation:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __repr__(self) -> str:
        cells = f"{self._layout.n_cells} cells, " if self._layout is not None else ""
        return f"<LabStation {self.provenance.source or 'unnamed'}: {cells}{', '.join(self.components)}>"


def description_seed(description: str | None) -> int | None:
    """The whole number after ``seed=`` in a lab description's ``key=value`` list, if any."""
    if not description or description.strip().endswith(".json"):
        return None
    for item in description.split(","):
        key, sep, value = item.partition("=")
        if sep and key.strip() == "seed":
            try:
                return int(value.strip())
            except ValueError:
                return None
    return None


def close_instruments(station: Station) -> None:
    for component in list(station.components.values()):
        if isinstance(component, Instrument):
            try:
                component.close()
            except OSError:  # a raw socket the instrument already reset: drop it and close
                if getattr(component, "_socket", None) is None:
                    raise
                component._socket = None
                component.close()
