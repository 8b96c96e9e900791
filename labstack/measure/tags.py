"""Metadata a station stamps on every run it makes, e.g. the chip id in a batch.

Cross-cutting, like a bluesky metadata preprocessor: the batch runner tags the
station once (``tag_station_runs(station, chip="seed-3")``) and every run any
calibration routine makes on it carries the tag, without each routine having to
pass it along. The caller's own ``metadata`` wins over a station tag of the same key.
"""

from __future__ import annotations

from typing import Any

RUN_METADATA_ATTR = "labstack_run_metadata"


def tag_station_runs(station: Any, **metadata: Any) -> None:
    """Add ``metadata`` to every run made on ``station`` from now on."""
    tags = dict(getattr(station, RUN_METADATA_ATTR, None) or {})
    tags.update(metadata)
    setattr(station, RUN_METADATA_ATTR, tags)


def station_run_metadata(station: Any) -> dict[str, Any]:
    """The tags of ``station`` (empty if it has none)."""
    return dict(getattr(station, RUN_METADATA_ATTR, None) or {})
