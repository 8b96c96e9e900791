"""Which chips a batch calibrates: ``--chips`` entries parsed, before any worker starts.

Kept apart from :mod:`labstack.distributed.chips` (which needs Dask) so the command
line can check a batch's chips, and report bad ones, cheaply.
"""

from __future__ import annotations

import re
import secrets
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

CHIPS_DIRNAME = "chips"
VIRTUAL_KEYS = ("cells", "topology", "dead", "stuck", "crosstalk", "realism", "drift")
_SEED_RANGE = re.compile(r"^(-?\d+)(?:\.\.(-?\d+))?$")


class ChipSpecError(ValueError):
    """A ``--chips`` entry that cannot be understood; the message names it."""


@dataclass(frozen=True)
class ChipSpec:
    """One chip of a batch: a station (file or shipped name) and, for the virtual
    lab, the description of the chip (``seed=3,cells=16`` or a ground-truth .json)."""

    chip_id: str
    station: str = "virtual"
    lab: str | None = None

    def lab_description(self) -> str | None:
        """The description given to ``load_station``: a fresh lab of this chip per call
        (a unique ``instance``), so a worker never reuses a lab another task touched."""
        if self.lab is None or self.lab.endswith(".json"):
            return self.lab
        return f"{self.lab},instance={self.chip_id}-{secrets.token_hex(3)}"


def parse_chips(
    items: Sequence[str], *, station: str = "virtual", defaults: Mapping[str, Any] | None = None
) -> list[ChipSpec]:
    """Chips from ``--chips`` entries (each entry may hold several, comma-separated).

    - ``seed=7`` is a virtual chip drawn from seed 7 (id ``seed-7``); ``seed=1..24``
      is 24 of them; ``cells=``, ``topology=``, ``dead=``, ``stuck=``, ``crosstalk=``,
      ``realism=`` and ``drift=`` after a seed apply to the chip(s) of that seed; ``defaults`` to every virtual chip.
    - ``chip.json`` (or ``truth=chip.json``) is the virtual chip of that ground truth.
    - ``lab.yaml`` (or any token without ``=``) is a station file or shipped station
      name: a real chip, or a station file whose own ``visalib`` describes the lab.

    Chips are virtual on ``station``. Ids are unique (``-2``, ``-3`` appended to repeats).
    """
    chips: list[tuple[str, str, dict[str, str] | str | None]] = []  # (id, station, lab)
    last: list[int] = []  # indices of the chips the last seed= token made
    for item in items:
        for token in filter(None, (t.strip() for t in item.split(","))):
            key, sep, value = token.partition("=")
            key = key.strip()
            value = value.strip()
            if sep and key == "seed":
                match = _SEED_RANGE.match(value)
                if not match:
                    raise ChipSpecError(f"--chips {token!r}: seed must be N or A..B")
                lo = int(match.group(1))
                hi = int(match.group(2)) if match.group(2) is not None else lo
                if hi < lo:
                    raise ChipSpecError(f"--chips {token!r}: empty seed range")
                last = []
                for seed in range(lo, hi + 1):
                    options = {k: str(v) for k, v in (defaults or {}).items() if v is not None}
                    options = {"seed": str(seed), **options}
                    last.append(len(chips))
                    chips.append((f"seed-{seed}", station, options))
            elif sep and key in VIRTUAL_KEYS:
                if not last:
                    raise ChipSpecError(f"--chips {token!r}: {key}= must follow a seed= entry")
                for i in last:
                    options = chips[i][2]
                    assert isinstance(options, dict)
                    options[key] = value
            elif (sep and key == "truth") or (not sep and token.endswith(".json")):
                path = Path(value if sep else token).expanduser().resolve()
                if not path.is_file():
                    raise ChipSpecError(f"--chips {token!r}: no ground-truth file {path}")
                chips.append((path.stem, station, str(path)))
                last = []
            elif not sep:
                chips.append((Path(token).stem, token, None))
                last = []
            else:
                raise ChipSpecError(
                    f"--chips {token!r}: unknown key {key!r}; use seed=, truth=, "
                    f"{'=, '.join(VIRTUAL_KEYS)}=, a .json ground truth or a station file"
                )
    if not chips:
        raise ChipSpecError("--chips: no chips given")
    seen: dict[str, int] = {}
    specs = []
    for chip_id, chip_station, lab in chips:
        seen[chip_id] = seen.get(chip_id, 0) + 1
        unique = chip_id if seen[chip_id] == 1 else f"{chip_id}-{seen[chip_id]}"
        if isinstance(lab, dict):
            lab = ",".join(f"{k}={v}" for k, v in lab.items())
        specs.append(ChipSpec(unique, chip_station, lab))
    return specs


