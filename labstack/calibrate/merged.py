"""An acquisition merged from several runs is stored as one run, so its values name a dataset.

A node that measures in parts (one run per temperature and colour class) returns
a dataset it assembled in memory, its ``run_id`` the parts' ids joined by ``+``.
Nothing on disk held that dataset, so the values fitted from it could not be
re-fitted, replayed by fit, reported or displayed. The engine stores it as a run
of its own (metadata ``derived_from``: the parts, ``calibration``: the node,
``parameters``: the node's) and records that run's id with the values instead.
"""

from __future__ import annotations

from typing import Any

import xarray as xr

from labstack.calibrate.change import plain
from labstack.calibrate.context import Context
from labstack.calibrate.node import Node, run_id_of
from labstack.calibrate.spec import Mode
from labstack.data.interop import store_dataset

SEPARATOR = "+"


def keep_merged(data: Any, node: Node, ctx: Context, mode: Mode) -> Any:
    """``data`` itself, stored first as a derived run if it was merged from several runs."""
    run_id = run_id_of(data)
    if run_id is None or SEPARATOR not in run_id or not isinstance(data, xr.Dataset):
        return data
    parts = run_id.split(SEPARATOR)
    metadata = {
        # the station's tags (a batch's chip id, a served lab, a watch's pass), as on the parts
        **dict(getattr(ctx.station, "run_metadata", None) or {}),
        "calibration": node.name,
        "mode": str(mode),
        "derived_from": parts,
        "parameters": plain(node.params_dict()),
    }
    run = store_dataset(data, node.name, ctx.data_dir, metadata=metadata)
    data.attrs["run_id"] = run.id
    data.attrs["derived_from"] = run_id
    return data
