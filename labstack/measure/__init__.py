"""Measurement sequences: describe them as data, check them, run them into zarr.

>>> seq = Sweep.over("v", "dac.ch1", np.linspace(0, 1, 11), Read("dmm.v1"), settle=0.01)
>>> run = run_sequence(seq, station, name="iv")        # doctest: +SKIP
>>> run.dataset().dmm_v1                               # doctest: +SKIP

* :mod:`~labstack.measure.sequence`: frozen, serialisable steps (Set, Read, Wait, Sweep, Trace).
* :mod:`~labstack.measure.plan`: the dry run: resolve every name, check every value.
* :mod:`~labstack.measure.runner`: the one runner, on the station's clock, into zarr.
* :mod:`~labstack.measure.files`: sequence description files (``labstack measure``).

Imports: station, safety, data (below). Imported by calibrations, session and above.
"""

from labstack.measure.plan import Plan, SequenceError, describe, plan_sequence, validate
from labstack.measure.runner import RunProgress, run_sequence
from labstack.measure.sequence import (
    Read,
    Sequence,
    Set,
    Step,
    Sweep,
    Trace,
    Wait,
    as_sequence,
    param_name,
    step_from_dict,
    step_from_json,
)

__all__ = [
    "Plan",
    "Read",
    "RunProgress",
    "Sequence",
    "SequenceError",
    "Set",
    "Step",
    "Sweep",
    "Trace",
    "Wait",
    "as_sequence",
    "describe",
    "param_name",
    "plan_sequence",
    "run_sequence",
    "step_from_dict",
    "step_from_json",
    "validate",
]
