"""Writes the notebooks from their cell sources (keeps them diff-able and output-free in git).

Run ``python notebooks/_build.py`` after editing a notebook's cells here.
"""

from pathlib import Path

import nbformat as nbf

HERE = Path(__file__).parent

QUICKSTART = [
    ("md", """# labstack quickstart: calibrate a virtual chip

This notebook does what `labstack calibrate` does, step by step, on the virtual lab:
load the station, sweep every cell's bias, fit the S-curves, and record offsets and
widths with uncertainties in the versioned calibration state. The instruments are
the real QCoDeS drivers (QDAC-II, Lakeshore 372) talking SCPI to the simulator."""),
    ("code", """import tempfile
from pathlib import Path

import matplotlib.pyplot as plt
import numpy as np

from labstack.calibration_run import calibrate_station, routines
from labstack.data import list_runs, load_run
from labstack.station import close_station, layout_of, load_station

data_dir = Path(tempfile.mkdtemp(prefix="labstack-quickstart-"))
station = load_station("virtual", lab="seed=1234,cells=16,instance=quickstart")
layout = layout_of(station)
print(f"{layout.n_cells} cells; bias lines {layout.bias[0]} .. {layout.bias[-1]}")
print(f"mixing chamber: {station.ls372.ch06.temperature() * 1e3:.2f} mK")"""),
    ("md", "## Calibrate\nThe graph runs every installed routine that is not already valid."),
    ("code", """report = calibrate_station(station, data_dir=data_dir, progress=True)
print(report.render())"""),
    ("md", "## Look at the S-curves\nThe raw samples are stored before fitting; the fit can be redone from the stored run alone."),
    ("code", """(info,) = list_runs(data_dir, calibration="bias_scurve")
ds = load_run(info.id, data_dir).dataset()
node = routines()["bias_scurve"]
results = node.fit(ds)
volts = ds["bias"].values
fig, axes = plt.subplots(2, 4, figsize=(12, 5), sharex=True, sharey=True)
for ax, r in zip(axes.flat, results[:8]):
    p, err = np.array(r.fit.extra["p"]), np.array(r.fit.extra["p_err"])
    ax.errorbar(volts, p, err, fmt=".", ms=3)
    fine = np.linspace(volts.min(), volts.max(), 400)
    ax.plot(fine, node.logistic(fine, r.fit["v0_V"], r.fit["width_V"]), lw=1)
    ax.set_title(f"cell {r.cell}: V0={r.fit['v0_V'] * 1e3:.0f} mV")
for ax in axes[-1]:
    ax.set_xlabel("bias (V)")
axes[0, 0].set_ylabel("P(+1)")
fig.tight_layout()"""),
    ("md", "## The calibration state\nEvery value with its uncertainty, time, source run and validity; versioned."),
    ("code", """from labstack.calibrate import CalibrationState

state = CalibrationState.load(data_dir / "calibration_state")
state"""),
    ("code", """close_station(station)"""),
]


def build(cells: list[tuple[str, str]], path: Path) -> None:
    nb = nbf.v4.new_notebook()
    nb.cells = [nbf.v4.new_markdown_cell(src) if kind == "md" else nbf.v4.new_code_cell(src) for kind, src in cells]
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
    nbf.write(nb, path)


if __name__ == "__main__":
    build(QUICKSTART, HERE / "01_quickstart.ipynb")
