"""The station file of a served lab: the virtual chip's station, its instruments on sockets.

It is the station :func:`labstack.visa.open_station` would build for the same lab
description (same drivers, chip layout, limits, ramps, interlocks, safe state),
with each instrument's address replaced by its served socket and its VISA library
by pyvisa-py (``@py``): no labstack backend sits between the drivers and the
lab. A ``labstack.service`` section says which lab serves it, so runs record the
lab description (a replay rebuilds that chip in-process), the clock speed they ran
under, and ``labstack status`` knows it may trust the served clock.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

import yaml

from labstack.visa import virtual_station_yaml

#: PyVISA's pure-Python backend, which reaches TCPIP SOCKET resources itself
PYVISA_PY = "@py"


def served_station_document(
    description: str,
    addresses: Mapping[str, str],
    *,
    speed: float = 0.0,
    service_file: str | Path | None = None,
    template: str | None = None,
) -> dict[str, Any]:
    """The station document (a mapping) for ``description`` served at ``addresses``.

    ``template`` is a virtual station's YAML text to serve instead of the default
    station (``labstack serve --station oxford_lockin``): same drivers, roles, limits
    and safety, each instrument pointed at its socket. A raw-socket instrument (one
    with a ``port:``, such as the Triton) gets the host and port and no VISA library,
    as on hardware.
    """
    document = yaml.safe_load(template if template is not None else virtual_station_yaml(description))
    instruments: dict[str, Any] = document["instruments"]
    missing = sorted(set(instruments) - set(addresses))
    if missing:
        raise ValueError(f"no served address for instrument(s) {missing}")
    for name, spec in instruments.items():
        init = dict(spec.get("init") or {})
        if "port" in spec:  # a raw TCP socket driver (IPInstrument): host and port, no VISA
            _, host, port, _ = addresses[name].split("::")
            spec["address"], spec["port"] = host, int(port)
            init.pop("visalib", None)
        else:
            spec["address"] = addresses[name]
            init["visalib"] = PYVISA_PY
        spec["init"] = init
    service: dict[str, Any] = {"lab": description, "speed": float(speed)}
    if service_file is not None:
        service["service_file"] = str(service_file)
    document["labstack"]["service"] = service
    return document


def served_station_yaml(
    description: str,
    addresses: Mapping[str, str],
    *,
    speed: float = 0.0,
    service_file: str | Path | None = None,
    template: str | None = None,
) -> str:
    """Station YAML text for ``description`` served at ``addresses`` (see the module docstring)."""
    document = served_station_document(
        description, addresses, speed=speed, service_file=service_file, template=template
    )
    header = (
        f"# written by `labstack serve` for the virtual lab '{description}': its instruments on\n"
        "# loopback sockets, reached through pyvisa-py with the unmodified drivers\n"
    )
    return header + yaml.safe_dump(document, sort_keys=False)
