"""Parameter snapshots remembered until the parameter's cache or settings change.

Every run stores the station's snapshot, and QCoDeS builds it anew each time: every
parameter of every instrument, ~1500 on a virtual 16-cell station (two QDAC-IIs of
24 channels, a Lake Shore 372), about 20 ms, while between two runs only the few
parameters the last run set or read have changed. So each parameter's
``snapshot_base`` is wrapped (on the instance; the driver's code is untouched) by one
that returns the dict it built last time when nothing it depends on has changed:

* the cache's timestamp object and raw value (every set or get through QCoDeS stamps
  a new timestamp, so a value that changed always comes with a new one);
* the settings a snapshot shows: validators, step, delays, label and unit.

Only ``update=False`` snapshots (what a run takes: cached values, no instrument
query) are remembered; any other asks QCoDeS as before. The dict is the one QCoDeS
built, so the snapshot is the same, key for key.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Sequence
from typing import Any

from qcodes.parameters import ParameterBase

ATTRIBUTE = "snapshot_base"


def _key(parameter: ParameterBase) -> tuple[Any, ...]:
    cache = parameter.cache
    raw = cache.raw_value
    return (
        cache.timestamp,
        id(raw),
        raw if isinstance(raw, int | float | str | bool | None) else None,
        id(parameter.vals),
        parameter.step,
        parameter.inter_delay,
        parameter.post_delay,
        parameter.label,
        parameter.unit,
    )


def remember_snapshots(parameter: ParameterBase) -> bool:
    """Wrap ``parameter.snapshot_base``; False if it is wrapped already."""
    if ATTRIBUTE in vars(parameter):
        return False
    original = parameter.snapshot_base
    memo: list[Any] = [None, None]  # key, dict

    def snapshot_base(update: bool | None = True, params_to_skip_update: Sequence[str] | None = None) -> dict[Any, Any]:
        if update is not False:
            return original(update, params_to_skip_update)
        try:
            key = _key(parameter)
        except Exception:  # a parameter whose cache cannot be looked at: as QCoDeS does it
            return original(update, params_to_skip_update)
        if memo[0] is not None and memo[0] == key:
            return memo[1]
        snap = original(update, params_to_skip_update)
        memo[0], memo[1] = key, snap
        return snap

    setattr(parameter, ATTRIBUTE, snapshot_base)
    return True


def station_parameters(components: Iterable[Any]) -> Iterator[ParameterBase]:
    """Every parameter of the instruments in ``components`` and their submodules."""
    seen: set[int] = set()
    stack = list(components)
    while stack:
        item = stack.pop()
        if id(item) in seen:
            continue
        seen.add(id(item))
        if isinstance(item, ParameterBase):
            yield item
            continue
        for parameter in getattr(item, "parameters", {}).values():
            if isinstance(parameter, ParameterBase):
                yield parameter
        stack.extend(getattr(item, "submodules", {}).values())
        if isinstance(item, Sequence) and not isinstance(item, str):  # a channel list
            stack.extend(item)


def remember_station_snapshots(components: Iterable[Any]) -> int:
    """Wrap every parameter of the station's instruments; the number wrapped."""
    return sum(remember_snapshots(p) for p in station_parameters(components))
