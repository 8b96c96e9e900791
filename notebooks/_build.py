"""Writes the notebooks from their cell sources (keeps them diff-able and output-free in git).

Run ``python notebooks/_build.py`` after editing a notebook's cells here.
"""

from pathlib import Path

import nbformat as nbf

HERE = Path(__file__).parent

QUICKSTART = [
    ("md", """# labstack quickstart: calibrate a virtual chip

This notebook does the heart of what `labstack calibrate` does, step by step, on the
virtual lab: load the station, sweep every cell's bias, fit the S-curves, and record
offsets and widths with uncertainties in the versioned calibration state (notebook 02
calibrates the whole chip, every node). The instruments are
the real QCoDeS drivers (QDAC-II, Lakeshore 372) talking SCPI to the simulator."""),
    ("code", """%load_ext labstack.presentation
import tempfile
from pathlib import Path

import matplotlib.pyplot as plt
import numpy as np

from labstack.calibrate import CalibrationState
from labstack.session import calibrate_station, routines
from labstack.data import list_runs, load_run
from labstack.visa import open_station

data_dir = Path(tempfile.mkdtemp(prefix="labstack-quickstart-"))
station = open_station("virtual", lab="seed=1234,cells=8,instance=quickstart")
layout = station.layout
print(f"{layout.n_cells} cells; bias lines {layout.bias[0]} .. {layout.bias[-1]}")
print(f"mixing chamber: {station.ls372.ch06.temperature() * 1e3:.2f} mK")"""),
    ("md", "## Calibrate\nThe graph runs the S-curve node and what it depends on (readout, cryostat), "
           "each only if it is not already valid; with no `names` it runs every installed routine."),
    ("code", """report = calibrate_station(station, data_dir=data_dir, names=["bias_scurve"], progress=True)
print(report.render())"""),
    ("md", "## Look at the S-curves\nThe raw samples are stored before fitting; the fit can be redone from the stored run alone."),
    ("code", """# bias_scurve may measure in several runs (the chip-wide sweep, then a window for each
# cell it did not resolve), stored merged as one run: the one the state's values name
state = CalibrationState.load(data_dir / "calibration_state")
run_id = state.get("cells.0.bias_offset_V").run_id
print([r.id for r in list_runs(data_dir, calibration="bias_scurve")], "->", run_id)
ds = load_run(run_id, data_dir).dataset()
node = routines()["bias_scurve"]
results = node.fit(ds)
fig, axes = plt.subplots(2, 4, figsize=(12, 5), sharex=True, sharey=True)
for ax, r in zip(axes.flat, results[:8]):
    volts = np.array(r.fit.extra["v"])  # this cell's points: the sweep and its window, if any
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
    ("code", """station.close()"""),
]


CALIBRATE = [
    ("md", """# Calibrate a whole chip from Jupyter

The calibration graph, the calibration itself, one node's result and the versioned
state all display as HTML here: status colours, S-curves with their fits, what
changed. An 8-cell virtual chip keeps this quick; a real chip is the same code with
another station file."""),
    ("code", """%load_ext labstack.presentation
import tempfile
from pathlib import Path

import matplotlib.pyplot as plt
import numpy as np
import pyvisa

from labstack.calibrate import CalibrationState, Context
from labstack.session import build_graph, calibrate_station
from labstack.visa import open_station

data_dir = Path(tempfile.mkdtemp(prefix="labstack-calibrate-"))
lab_description = "seed=21,cells=8,instance=nb-calibrate"
station = open_station("virtual", lab=lab_description)
params = {"bias_scurve": {"n_points": 41, "n_samples": 2000}}"""),
    ("md", "## The graph before anything ran\nEvery node is grey: *never* calibrated. Nothing is measured to find that out."),
    ("code", """build_graph(Context.create(data_dir, station), params=params)"""),
    ("md", "## Calibrate\nThe report shows each node's status, flagged cells and its fit, with the S-curves."),
    ("code", """report = calibrate_station(station, data_dir=data_dir, params=params, progress=False)
report"""),
    ("md", "## One node's result\nThe per-cell table and the plot come from the routine itself (`table`, `plot`)."),
    ("code", """report.result("bias_scurve")"""),
    ("md", "## The calibration state and what this calibration changed"),
    ("code", """state = CalibrationState.load(data_dir / "calibration_state")
state.diff(0)"""),
    ("md", "## Calibrate again: nothing is stale, nothing is measured\nThe graph is green now."),
    ("code", """again = calibrate_station(station, data_dir=data_dir, params=params, progress=False)
print(next(line for line in again.render().splitlines() if "kept (still valid)" in line))
again.graph"""),
    ("md", """## Against the truth
The simulator knows each cell's offset; the calibration never saw it. The chip drifts
(a slow walk of the offsets, and now and then a flux jump), so each fit is compared
with the offset the cell had when the sweep crossed it: the lab time of that point is
in the run (`clock_start` plus the point's `bias_clock`). Pulls (fit − truth) / σ
should scatter around zero with unit width."""),
    ("code", """from labstack.data import load_run

lab = pyvisa.ResourceManager(f"{lab_description}@labstack").visalib.lab
fit = np.array([state.value(f"cells.{i}.bias_offset_V") for i in range(8)])
err = np.array([state.get(f"cells.{i}.bias_offset_V").stderr for i in range(8)])

def truth_when_measured(i):
    entry = state.get(f"cells.{i}.bias_offset_V")
    ds = load_run(entry.run_id, data_dir).dataset()
    times = float(ds.attrs["clock_start"]) + ds["bias_clock"].values
    crossing = times[np.argmin(np.abs(ds["bias"].values - entry.value))]
    return lab.truth_at(float(crossing)).v0_V[i]

truth = np.array([truth_when_measured(i) for i in range(8)])
pulls = (fit - truth) / err
fig, ax = plt.subplots(figsize=(6, 3))
ax.errorbar(range(8), (fit - truth) * 1e3, err * 1e3, fmt="o")
ax.axhline(0, color="k", lw=0.5)
ax.set_xlabel("cell"); ax.set_ylabel("V0 fit − truth (mV)")
print(f"pulls: mean {pulls.mean():+.2f}, rms {np.sqrt((pulls**2).mean()):.2f}, max |pull| {abs(pulls).max():.2f}")"""),
    ("code", """station.close()"""),
]

THERMALIZATION = [
    ("md", """# Thermalization times from the telegraph signal

Each cell flips between its two states at Kramers rates; its correlation time
`τ_c = 1 / (r₊ + r₋)` is how long it takes to forget its state, i.e. how fast it
hands out independent samples. We sample every cell at 10 MHz with a `Trace`
(blocks taken back to back), threshold the readings, average the autocorrelation
over blocks and fit its exponential decay `C(k Δ) = exp(−k Δ / τ_c)`.

First, a live look at the readout while the bias sweeps: `LivePlot` subscribes to
the runner and redraws after every flush."""),
    ("code", """%load_ext labstack.presentation
import tempfile
from pathlib import Path

import matplotlib.pyplot as plt
import numpy as np
import pyvisa

from labstack.fit import two_level_threshold
from labstack.measure import Read, Sweep, Trace, run_sequence
from labstack.measure.live import LivePlot
from labstack.visa import open_station

data_dir = Path(tempfile.mkdtemp(prefix="labstack-thermalization-"))
lab_description = "seed=7,cells=4,instance=nb-thermal"
station = open_station("virtual", lab=lab_description)
layout = station.layout"""),
    ("code", """station.sampler.n_samples(1000)
volts = np.linspace(-0.6, 0.6, 17)
sweep = Sweep("bias", {name: volts for name in layout.bias}, coord=volts,
              body=[Read("sampler.samples", name="samples")], settle=1e-3)
live = LivePlot("samples")
run = run_sequence(sweep, station, name="live_scurves", data_dir=data_dir, progress=False,
                   flush_every=1, flush_interval=0.05, subscribers=[live])
print(f"{live.frames} live updates; the last shows all {run.dataset().sizes['bias']} points")"""),
    ("md", "## The telegraph trace\nBias back at 0 V; 8 blocks of 40 000 samples per cell at 10 MHz (3.2 ms of simulated time)."),
    ("code", """for name in layout.bias:
    station.components[name.split(".")[0]].submodules[name.split(".")[1]].dc_constant_V(0.0)
rate, n = 10e6, 40_000
station.sampler.sample_rate(rate)
station.sampler.n_samples(n)
trace = Trace("block", n=8, body=[Read("sampler.samples", name="samples")])
run = run_sequence(trace, station, name="telegraph", data_dir=data_dir, progress=False)
x = run.dataset()["samples"].transpose("sampler_cell", "block", "sampler_sample").values
fig, axes = plt.subplots(x.shape[0], 1, figsize=(8, 4), sharex=True)
for c, ax in enumerate(axes):
    ax.plot(np.arange(400) / rate * 1e6, x[c, 0, :400], lw=0.7)
    ax.set_ylabel(f"cell {c}")
axes[-1].set_xlabel("time (µs)");"""),
    ("md", "## Autocorrelation and τ_c"),
    ("code", """dt, lags = 1 / rate, np.arange(200)
tau = []
fig, ax = plt.subplots(figsize=(6, 3.5))
for c in range(x.shape[0]):
    threshold = two_level_threshold(x[c].ravel())[0]
    s = (x[c] > threshold).astype(float)
    s -= s.mean(axis=1, keepdims=True)
    spectrum = np.fft.rfft(s, 2 * n, axis=1)
    acf = np.fft.irfft(spectrum * np.conj(spectrum), axis=1)[:, :200].mean(axis=0)
    acf /= acf[0]
    use = (lags >= 2) & (acf > 0.1)
    use &= np.cumprod(use | (lags < 2)).astype(bool)   # the first contiguous stretch
    slope = np.polyfit(lags[use] * dt, np.log(acf[use]), 1)[0]
    tau.append(-1 / slope)
    ax.semilogy(lags * dt * 1e6, np.clip(acf, 1e-3, None), ".", ms=3, label=f"cell {c}")
    ax.semilogy(lags * dt * 1e6, np.exp(-lags * dt / tau[-1]), "k-", lw=0.6)
ax.set_xlabel("lag (µs)"); ax.set_ylabel("autocorrelation"); ax.set_ylim(1e-2, 1.1); ax.legend()
tau = np.array(tau)"""),
    ("md", "## Against the truth\nThe simulator's Kramers rates at the cells' actual fields and effective temperature."),
    ("code", """lab = pyvisa.ResourceManager(f"{lab_description}@labstack").visalib.lab
cells, t_eff, h = lab.truth.cells, lab.t_eff(), lab.fields()
r_up = cells.gamma0_Hz * np.exp(-(cells.barrier_K - h) / t_eff)
r_down = cells.gamma0_Hz * np.exp(-(cells.barrier_K + h) / t_eff)
tau_true = 1 / (r_up + r_down)
for c in range(len(tau)):
    print(f"cell {c}: tau measured {tau[c] * 1e6:.3f} µs, true {tau_true[c] * 1e6:.3f} µs "
          f"({(tau[c] / tau_true[c] - 1) * 100:+.1f} %), {1 / (2 * tau[c]) / 1e3:.0f} k independent samples/s")"""),
    ("code", """station.close()"""),
]

REPLAY = [
    ("md", """# Replay a run

Every run records what it takes to run it again: the sequence, the station file, the
virtual-lab description and seed, and the calibration state it started from. A
calibration is recorded as a run of its own. `replay_run` (or `labstack replay RUN_ID`)
re-executes it on a fresh virtual lab and compares data and fitted values."""),
    ("code", """%load_ext labstack.presentation
import json
import tempfile
from pathlib import Path

from labstack.session import calibrate_station
from labstack.data import load_run
from labstack.session.replay import replay_run
from labstack.sim.truth import GroundTruth
from labstack.visa import open_station

data_dir = Path(tempfile.mkdtemp(prefix="labstack-replay-"))
station = open_station("virtual", lab="seed=7,cells=4")
report = calibrate_station(station, data_dir=data_dir, progress=False, names=["bias_scurve"],
                           params={"bias_scurve": {"n_points": 21, "n_samples": 400}})
station.close()   # a replay builds the same instruments again
print(report.render())"""),
    ("md", "The recorded calibration, as stored:"),
    ("code", """load_run(report.run_id, data_dir)"""),
    ("md", "## Same chip, same seed: bit for bit\n`labstack replay RUN_ID` does the same from a shell."),
    ("code", """same = replay_run(report.run_id, data_dir)
print(same.text())
same"""),
    ("md", """## Another chip: one cell's offset moved by 50 mV
A ground-truth file (`labstack sim ground-truth --seed 7 --cells 4 -o chip.json`) with
cell 2's `v0_V` edited; `labstack replay RUN_ID --truth moved.json`."""),
    ("code", """doc = GroundTruth.from_seed(7, 4, "chain").to_dict()
doc["cells"]["v0_V"][2] += 0.050
(data_dir / "moved.json").write_text(json.dumps(doc))
moved = replay_run(report.run_id, data_dir, truth=data_dir / "moved.json")
print(moved.text())
print("named difference:", moved.differences[0].key)"""),
    ("md", """## SCPI transcripts: the drivers without hardware
Record every SCPI exchange of a session (against hardware, or here the virtual lab),
then run the unmodified drivers against the transcript. A driver change that alters
a command fails with the instrument, the transcript line and both commands."""),
    ("code", """import numpy as np

from labstack.drivers.sampler import LabstackSampler
from labstack.visa import (TranscriptMismatch, finish_recording, playback_station,
                                 record_station, verify_playback)

def session(st):
    st.qdac1.ch01.dc_constant_V(0.1)
    st.sampler.n_samples(8)
    return st.sampler.samples()

recording = record_station("virtual", data_dir / "session.jsonl.gz", lab="seed=7,cells=4,instance=nb-scpi")
recorded = session(recording)
transcript = finish_recording(recording)

played = playback_station("virtual", transcript)
print("same samples without hardware:", np.array_equal(session(played), recorded))
verify_playback(played)
played.close()"""),
    ("code", """original_acquire = LabstackSampler.acquire
LabstackSampler.acquire = lambda self: self.visa_handle.query_binary_values("FETCH?", datatype="f", container=np.array)
played = playback_station("virtual", transcript)
try:
    session(played)
except TranscriptMismatch as err:
    print(err.args[0])
finally:
    LabstackSampler.acquire = original_acquire
    played.close()"""),
]


LAB_SERVICE = [
    ("md", """# The lab as a service: serve it, connect a notebook, keep it calibrated

`labstack serve` runs the virtual lab as a long-lived process: each instrument speaks SCPI
on its own loopback TCP port, as LAN instruments do, and the unmodified drivers reach it
through pyvisa-py. Its clock lives on between calls: with `--speed 3600` an hour of lab
time passes every wall second while the lab is idle, so calibrations go stale while you
watch. A notebook, the command line and `labstack watch` can all be connected at once."""),
    ("code", """import subprocess
import sys
import tempfile
import time
from pathlib import Path

work = Path(tempfile.mkdtemp(prefix="labstack-service-"))
serve = subprocess.Popen(
    [sys.executable, "-m", "labstack.cli", "serve", "--seed", "7", "--cells", "4",
     "--speed", "3600", "--dir", str(work / "lab")],
    stdout=subprocess.PIPE, text=True,
)
for line in serve.stdout:  # it prints each instrument's address, then serves until stopped
    print(line, end="")
    if line.startswith("serving on"):
        break
station_file = work / "lab" / "station.yaml"  # what serve wrote: the sockets' station file"""),
    ("md", """## Connect a notebook
The station file `serve` wrote points at the sockets; it opens like any station file.
Nothing of labstack sits between the drivers and the sockets: the VISA library is pyvisa-py."""),
    ("code", """from labstack.station import load_station

station = load_station(station_file)
handle = station.ls372.visa_handle
print(f"{type(station.ls372).__name__} via {type(handle.visalib).__name__} at {handle.resource_name}")
t0 = station.clock.now()
time.sleep(0.5)
t1 = station.clock.now()
print(f"lab time ran on by {t1 - t0:.0f} s while this notebook slept 0.5 s")
print(f"mixing chamber: {station.ls372.ch06.temperature() * 1e3:.2f} mK")"""),
    ("md", """## Calibrate from here, ask the status by the served clock
`labstack status --station <station file>` does the same from a shell: the served clock
lives on, so the status is as of now, not frozen at the last update."""),
    ("code", """from labstack.session import calibrate_station, calibration_status

data_dir = work / "data"
report = calibrate_station(station, data_dir=data_dir, progress=False, names=["readout"])
print(report.render())
print(calibration_status(station_file, data_dir, names=["readout"]).render())"""),
    ("md", """## Keep it calibrated
`labstack watch --station <station file>` runs Optimus `maintain` on a schedule in lab time
and whenever a calibration goes stale; here the same loop runs in the notebook, every 10
lab minutes (a sixth of a second at this speed), stopping after three passes (normally it
runs until Ctrl-C or SIGTERM, which leave the station in its safe state). It opens the
station itself, so the notebook closes its own first (QCoDeS names instruments per process;
another process could keep it open). Every pass is recorded for dashboards."""),
    ("code", """from labstack.service.watch import Watcher, WatchConfig

station.close()
watcher = Watcher(WatchConfig(station_file, data_dir=data_dir, names=["readout"], every_s=600, max_passes=3))
watcher.run()"""),
    ("code", """from labstack.service.status import state_history, watch_passes, watch_status

for p in watch_passes(data_dir):
    print(f"pass {p['pass']}: {p['trigger']:<10} checked {[c['node'] + ':' + c['outcome'] for c in p['checked']]}, "
          f"recalibrated {p['recalibrated']}, {p['lab_s']:.0f} s lab in {p['wall_s']:.2f} s wall")
print("watch:", watch_status(data_dir)["state"])
print("state versions:", [(v["version"], v["message"]) for v in state_history(data_dir)])"""),
    ("md", """## Watch the dashboard
`labstack dashboard --data-dir <data dir>` serves a live page of the same files: the graph,
the chip, each cell's history with the watch's recalibrations marked, and the node now
running. Here it runs in the notebook on a free port; open the printed address in a
browser (the token in it enables pause/resume/abort). Its JSON API shows what the page shows."""),
    ("code", """import json
import urllib.request

from labstack.presentation.dashboard.server import DashboardServer

dashboard = DashboardServer(data_dir, port=0).start()
print(dashboard.banner())
summary = json.load(urllib.request.urlopen(dashboard.url + "api/summary"))
print("state version on the page:", summary["state_version"])
print({n["name"]: n["status"] for n in summary["nodes"]})
dashboard.stop()"""),
    ("code", """serve.terminate()  # SIGTERM: the service stops cleanly and frees its ports
print("service exit code", serve.wait(timeout=30))"""),
]


TRAIN = [
    ("md", """# Train the chip in the loop

Open loop, a target model is programmed through the calibration alone, and every
residual error of the calibration (offsets, widths, crosstalk, coupler zeros and
slopes) ends up in the chip's distribution. Closing the loop, the chip is sampled,
its means and pair correlations are compared with the target's (in units of their
errors from the effective sample size), and the programmed fields and couplings are
moved by moment matching until they agree. This is `labstack train --target FILE`,
step by step, on a small virtual chip: a 6-cell chain."""),
    ("code", """%load_ext labstack.presentation
import json
import tempfile
from pathlib import Path

import matplotlib.pyplot as plt
import numpy as np

from labstack.calibrate import CalibrationState
from labstack.session import calibrate_station
from labstack.train import load_target, train
from labstack.train.calibration import Couplers
from labstack.train.loop import TrainConfig
from labstack.train.update import StopRule
from labstack.visa import open_station

data_dir = Path(tempfile.mkdtemp(prefix="labstack-train-"))
station = open_station("virtual", lab="seed=7,cells=6,instance=train-notebook")
layout = station.layout
print(f"{layout.n_cells} cells, couplers {[tuple(p) for p in layout.coupler_pairs]}")"""),
    ("md", """## Calibrate what training reads
Training reads the virtual biases (offsets, widths, crosstalk) and the couplers (zeros,
`kappa / T_eff`); asking for the `couplers` node brings its dependencies along. Lighter
sweeps than the defaults keep this fast: they move the open-loop starting point, which
the loop then corrects."""),
    ("code", """report = calibrate_station(station, data_dir=data_dir, progress=False, names=["couplers"], params={
    "bias_scurve": {"n_points": 121, "n_samples": 500},
    "bias_settling": {"repeats": 1},
    "effective_temperature": {"temperatures_K": [0.0, 0.035, 0.08], "n_samples": 200},
    "couplers": {"n_samples": 3000},
})
print("calibrated:", report.calibrated)
state = CalibrationState.load(data_dir / "calibration_state")"""),
    ("md", """## A target file
A model target names its cells, fields `h_K` and couplings `J_K` in kelvin (a data target
gives `samples` instead). Here: random fields and couplings within ±0.5 `T_eff`, on
every coupler of the chain."""),
    ("code", """t_eff = Couplers.from_state(state, len(layout.coupler_pairs)).t_eff_K
rng = np.random.default_rng(1)
cells = list(range(layout.n_cells))
doc = {"cells": cells,
       "h_K": (rng.uniform(-0.5, 0.5, len(cells)) * t_eff).tolist(),
       "J_K": [[int(a), int(b), float(rng.uniform(-0.5, 0.5) * t_eff)] for a, b in layout.coupler_pairs]}
target_file = data_dir / "target.json"
target_file.write_text(json.dumps(doc, indent=1))
target = load_target(target_file)  # checked against the chip before anything is sent
print(f"T_eff = {t_eff * 1e3:.1f} mK; target on cells {target.cells}")"""),
    ("md", """## Train
Each iteration writes every bias and coupler line (one guarded SCPI message per DAC),
waits for the lines, takes one single-shot sample of all cells and updates. The loop
stops when χ²/dof of the residuals is consistent with noise on two iterations in a row.
The chip is scored on a long sample at the open-loop and at the trained parameters:
`KL(chip || target)` by exact enumeration."""),
    ("code", """chi2_bound = StopRule().threshold(target.n + len(target.couplings))
result = train(station, target, state=state, data_dir=data_dir,
               config=TrainConfig(n_samples=20_000, n_eval=100_000))
print(result.render())"""),
    ("code", """fig, ax = plt.subplots(figsize=(6, 3.5))
it = np.arange(1, len(result.chi2) + 1)
ax.semilogy(it, result.chi2, "o-", label="chip vs target")
ax.axhline(chi2_bound, color="grey", ls="--", label="stop: consistent with noise")
ax.set_xlabel("iteration")
ax.set_ylabel("χ²/dof of the residuals (in σ²)")
ax.set_title(f"open loop KL {result.open_loop.kl_nats:.4f} → trained {result.trained.kl_nats:.5f} nats")
ax.legend()
fig.tight_layout()"""),
    ("md", """Every iteration is a point of a stored run (parameters, voltages, moments with their
errors, χ², and the time split), so a crashed training resumes with
`labstack train --target FILE --resume RUN_ID`."""),
    ("code", """station.close()
print(result.last_line())"""),
]


def build(cells: list[tuple[str, str]], path: Path) -> None:
    nb = nbf.v4.new_notebook()
    nb.cells = [nbf.v4.new_markdown_cell(src) if kind == "md" else nbf.v4.new_code_cell(src) for kind, src in cells]
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
    nbf.write(nb, path)


if __name__ == "__main__":
    build(QUICKSTART, HERE / "01_quickstart.ipynb")
    build(CALIBRATE, HERE / "02_calibrate_chip.ipynb")
    build(THERMALIZATION, HERE / "03_thermalization.ipynb")
    build(REPLAY, HERE / "04_replay.ipynb")
    build(LAB_SERVICE, HERE / "05_lab_service.ipynb")
    build(TRAIN, HERE / "06_train_in_the_loop.ipynb")
