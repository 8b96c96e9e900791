"""Roles: what each instrument of a station does for the chip, and which models can do it.

Calibration routines speak to roles, never to models. A station file's ``labstack:``
section maps them to instruments:

========================  ==================================================  =========================
role                      station-file key                                    models labstack knows
========================  ==================================================  =========================
``bias``                  ``chip.bias`` (+ ``chip.bias_parameter``)           QDAC-II, B2962A, DAC array
``couplers``              ``chip.couplers`` (+ ``chip.coupler_parameter``)    QDAC-II, B2962A, DAC array
``readout`` (sampler)     ``readout: sampler`` or ``{kind: sampler, ...}``    labstack FPGA sampler
``readout`` (lock-in)     ``readout: {kind: lockin, lockins: [...]}``         SR860, SR865
``preamp``                ``readout.preamp``                                  labstack preamplifier
``thermometry``           ``thermometry.instrument``                          Lake Shore 372, Oxford Triton
``clock``                 ``clock``                                           labstack lab clock
========================  ==================================================  =========================

What a role changes for the routines: a sampler gives single shots of every cell at
once; a lock-in gives the time-averaged readout of the lines its preamp channel
selects (so P(+1), not single shots: routines that need switching statistics say so
and are left out, :func:`labstack.session.run.build_graph`). A Lake Shore offers an
open-loop heater current; a Triton offers closed-loop set-points only
(:class:`Thermometry`: where each model keeps its readings and heater controls).

A role mapped to a model known not to fill it (a thermometer as a bias line) is
refused with the file and line (:func:`check_roles`). A model labstack does not
know (a lab's own driver) is accepted here and checked when it is opened: the
parameters the role needs must exist.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

#: which roles each known driver class (by its dotted ``type:``) can fill
KNOWN_TYPES: dict[str, frozenset[str]] = {
    "qcodes_contrib_drivers.drivers.QDevil.QDAC2.QDac2": frozenset({"bias", "couplers"}),
    "qcodes.instrument_drivers.Keysight.KeysightB2962A": frozenset({"bias", "couplers"}),
    "qcodes.instrument_drivers.Keysight.Keysight_B2962A.KeysightB2962A": frozenset({"bias", "couplers"}),
    "labstack.drivers.array_dac.LabstackArrayDac": frozenset({"bias", "couplers"}),
    "labstack.drivers.sampler.LabstackSampler": frozenset({"readout.sampler"}),
    "qcodes.instrument_drivers.stanford_research.SR860": frozenset({"readout.lockin"}),
    "qcodes.instrument_drivers.stanford_research.SR865": frozenset({"readout.lockin"}),
    "qcodes.instrument_drivers.stanford_research.SR860.SR860": frozenset({"readout.lockin"}),
    "labstack.drivers.preamp.LabstackPreamp": frozenset({"preamp"}),
    "qcodes.instrument_drivers.Lakeshore.LakeshoreModel372": frozenset({"thermometry"}),
    "qcodes.instrument_drivers.oxford.triton.OxfordTriton": frozenset({"thermometry"}),
    "qcodes.instrument_drivers.oxford.OxfordTriton": frozenset({"thermometry"}),
    "labstack.drivers.lab_clock.VirtualLabClock": frozenset({"clock"}),
}

#: what each role means, for error messages
ROLE_NAMES = {
    "bias": "a bias line (DAC output)",
    "couplers": "a coupler line (DAC output)",
    "readout.sampler": "the sampler readout",
    "readout.lockin": "a lock-in readout",
    "preamp": "the readout preamplifier",
    "thermometry": "the thermometry and heater",
    "clock": "the lab clock",
}

@dataclass(frozen=True)
class Thermometry:
    """How a thermometry model's readings and heater are reached, and how it heats.

    ``reading`` is the parameter of a thermometer channel named in the station file
    (``{channel}``: ``ch06`` on a Lake Shore, ``T8`` on a Triton). The heater's
    ``mode``, ``range`` and ``setpoint`` parameters are under ``{heater}`` (the
    Lake Shore's heater channel, e.g. ``ls372.sample_heater``) or, for a controller
    whose loop parameters sit on the instrument itself (Triton), ``{instrument}``.
    ``control`` is ``open_loop`` (a heater current the routine chooses) or
    ``closed_loop`` (a temperature set-point the controller holds); ``scanner``
    says whether the channels share one multiplexed bridge (fresh readings need a
    switch and a pause).
    """

    reading: str = "{channel}.temperature"
    mode: str = "{heater}.mode"
    range: str = "{heater}.output_range"
    setpoint: str = "{heater}.setpoint"
    control: str = "open_loop"
    scanner: bool = True


LAKESHORE = Thermometry()
TRITON = Thermometry(
    reading="{channel}",
    mode="{instrument}.pid_mode",
    range="{instrument}.pid_range",
    setpoint="{instrument}.pid_setpoint",
    control="closed_loop",
    scanner=False,
)
#: thermometry models by their driver's dotted ``type:`` (any other: the Lake Shore's layout)
THERMOMETRY_MODELS = {
    "qcodes.instrument_drivers.oxford.triton.OxfordTriton": TRITON,
    "qcodes.instrument_drivers.oxford.OxfordTriton": TRITON,
}


def thermometry_model(type_name: str | None) -> Thermometry:
    """How the thermometry instrument of driver ``type_name`` is reached (Lake Shore-like by default)."""
    return THERMOMETRY_MODELS.get(type_name or "", LAKESHORE)


READOUT_KINDS = ("sampler", "lockin")
#: a lock-in's preamp channel selects one of this many readout lines by default
DEFAULT_LINES_PER_LOCKIN = 4


@dataclass(frozen=True)
class Readout:
    """The readout role: a sampler, or lock-ins each behind a preamp channel with an input relay.

    Cell ``c`` is read by ``lockins[c // lines_per_lockin]`` on input
    ``c % lines_per_lockin + 1`` of ``preamp`` channel ``c // lines_per_lockin + 1``.
    """

    kind: str = "sampler"
    instrument: str = "sampler"
    lockins: tuple[str, ...] = ()
    preamp: str | None = None
    lines_per_lockin: int = DEFAULT_LINES_PER_LOCKIN

    @property
    def instruments(self) -> list[str]:
        if self.kind == "sampler":
            return [self.instrument]
        return [*self.lockins, *([self.preamp] if self.preamp else [])]

    def line(self, cell: int) -> tuple[int, int]:
        """(lock-in index from 0, preamp input from 1) that reads ``cell``."""
        return cell // self.lines_per_lockin, cell % self.lines_per_lockin + 1


Fail = Callable[[tuple[str, ...], str], Exception]


def parse_readout(spec: object, fail: Fail, expand: Callable[[str], list[str]]) -> Readout:
    """The ``readout:`` key: an instrument name (a sampler) or a mapping with ``kind``."""
    key = ("labstack", "readout")
    if spec is None:
        return Readout()
    if isinstance(spec, str):
        return Readout("sampler", spec)
    if not isinstance(spec, dict):
        raise fail(key, "must be an instrument name (a sampler) or a mapping with 'kind'")
    allowed = {"kind", "instrument", "lockins", "preamp", "lines_per_lockin"}
    unknown = sorted(set(map(str, spec)) - allowed)
    if unknown:
        raise fail((*key, unknown[0]), f"unknown key; use {sorted(allowed)}")
    kind = spec.get("kind", "sampler")
    if kind not in READOUT_KINDS:
        raise fail((*key, "kind"), f"{kind!r} is not a readout kind; use one of {list(READOUT_KINDS)}")
    if kind == "sampler":
        if not isinstance(spec.get("instrument"), str):
            raise fail(key, "a sampler readout needs 'instrument: <name>'")
        return Readout("sampler", spec["instrument"])
    lockins = spec.get("lockins")
    if isinstance(lockins, str):
        lockins = [lockins]
    if not isinstance(lockins, list) or not lockins:
        raise fail((*key, "lockins"), "a lock-in readout needs 'lockins: [<name>, ...]'")
    names: list[str] = []
    for item in lockins:
        try:
            names.extend(expand(str(item)))
        except ValueError as exc:
            raise fail((*key, "lockins"), str(exc)) from None
    lines = spec.get("lines_per_lockin", DEFAULT_LINES_PER_LOCKIN)
    if isinstance(lines, bool) or not isinstance(lines, int) or lines < 1:
        raise fail((*key, "lines_per_lockin"), f"must be a whole number >= 1, got {lines!r}")
    preamp = spec.get("preamp")
    if preamp is not None and not isinstance(preamp, str):
        raise fail((*key, "preamp"), "must be an instrument name")
    if lines > 1 and preamp is None:
        raise fail(key, f"{lines} lines per lock-in need a preamp whose input relay selects them")
    return Readout("lockin", "", tuple(names), preamp, lines)


def check_roles(
    assignments: list[tuple[tuple[str, ...], str, str]],
    types: dict[str, str],
    fail: Fail,
) -> None:
    """Refuse a role mapped to an instrument of a model known not to fill it.

    ``assignments`` are (station-file key, instrument, role); ``types`` each
    instrument's dotted ``type:``.
    """
    for key, instrument, role in assignments:
        type_name = types.get(instrument)
        can = KNOWN_TYPES.get(type_name or "")
        if can is None or role in can:
            continue
        does = ", ".join(ROLE_NAMES[r] for r in sorted(can))
        raise fail(
            key,
            f"instrument '{instrument}' ({type_name.rsplit('.', 1)[-1]}) cannot be {ROLE_NAMES[role]}; "
            f"it can be: {does}",
        )


def roles_of(assignments: list[tuple[tuple[str, ...], str, str]], instrument: str) -> list[str]:
    """The roles ``instrument`` was given, in words (for errors about that instrument)."""
    out: list[str] = []
    for _key, name, role in assignments:
        if name == instrument and ROLE_NAMES[role] not in out:
            out.append(ROLE_NAMES[role])
    return out
