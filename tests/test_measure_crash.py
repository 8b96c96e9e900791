"""A run killed with SIGKILL mid-sweep keeps every point flushed before the kill."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
import time

import numpy as np
import pytest

from labstack.data import list_runs

CHILD = textwrap.dedent(
    """
    import numpy as np
    from qcodes import Parameter
    from labstack.clock import WallClock
    from labstack.measure import Read, Sweep, run_sequence

    v = Parameter("v", set_cmd=None, initial_value=0.0, unit="V")
    y = Parameter("y", get_cmd=lambda: 3 * v.cache.get() + 1)
    block = Parameter(
        "block",
        get_cmd=lambda: np.full((16, 4096), v.cache.get(), dtype=np.float32)
        + np.arange(4096, dtype=np.float32),
    )
    seq = Sweep.over(
        "v", v, np.arange(2000.0),
        Read(y), Read(block, dims=("cell", "sample")),
        settle=0.01,
    )
    # Wall clock sleeps for real, so the parent has time to kill us mid-sweep.
    run_sequence(
        seq, None, name="doomed", clock=WallClock(), progress=False,
        flush_every=1000, flush_interval=0.02,
    )
    """
)


def _flushed(data_dir) -> int:
    runs = list_runs(data_dir)
    if not runs:
        return 0
    try:
        return int(json.loads((runs[0].path / "run.json").read_text())["points_flushed"])
    except (OSError, ValueError, KeyError):
        return 0


def _kill_when(proc: subprocess.Popen, ready, what: str, after_s: float = 0.0) -> None:
    """SIGKILL ``proc`` ``after_s`` after ``ready()`` holds (fail if it exits or 45 s pass)."""
    try:
        deadline = time.monotonic() + 45
        while not ready():
            if proc.poll() is not None:
                pytest.fail(f"child exited early: {proc.stderr.read().decode()}")
            if time.monotonic() > deadline:
                pytest.fail(f"child never {what}")
            time.sleep(0.01)
        time.sleep(after_s)
        proc.send_signal(signal.SIGKILL)
        proc.wait(10)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(10)
    assert proc.returncode == -signal.SIGKILL


@pytest.mark.timeout(60)
def test_sigkill_mid_sweep_keeps_flushed_points(tmp_path):
    env = dict(os.environ, LABSTACK_DATA_DIR=str(tmp_path))
    proc = subprocess.Popen([sys.executable, "-c", CHILD], env=env, stderr=subprocess.PIPE)
    _kill_when(proc, lambda: _flushed(tmp_path) >= 25, "flushed 25 points")

    (run,) = list_runs(tmp_path)
    flushed = run.info["points_flushed"]
    assert flushed >= 25
    assert run.status == "failed"  # the writer is gone; run.json still said "running"
    ds = run.dataset()  # opens although never consolidated
    assert not (run.store_path / ".zmetadata").exists()
    assert ds.sizes["v"] == 2000

    y = ds["y"].values
    taken = ~np.isnan(y)
    n = int(taken.sum())
    assert n >= flushed
    assert n < 2000  # killed mid-sweep
    # every point up to the last flush is there, contiguous from the start
    assert taken[:n].all() and not taken[n:].any()
    np.testing.assert_array_equal(y[:n], 3 * np.arange(n) + 1)
    assert (~np.isnan(ds["v_clock"].values[:n])).all()
    # array points are whole: no chunk is half-written
    block = ds["block"].values
    blocks_taken = ~np.isnan(block[:, 0, 0])
    m = int(blocks_taken.sum())
    assert m >= flushed and blocks_taken[:m].all()
    expected = np.arange(m, dtype=np.float32)[:, None, None] + np.arange(4096, dtype=np.float32)
    np.testing.assert_array_equal(block[:m], np.broadcast_to(expected, (m, 16, 4096)))
    assert np.isnan(block[m:]).all()


CHILD_UNFLUSHED = textwrap.dedent(
    """
    import numpy as np
    from qcodes import Parameter
    from labstack.clock import WallClock
    from labstack.measure import Read, Sweep, run_sequence

    v = Parameter("v", set_cmd=None, initial_value=0.0, unit="V")
    y = Parameter("y", get_cmd=lambda: 3 * v.cache.get() + 1)
    # no flush for ten minutes and no filled chunk: the store stays staged
    run_sequence(
        Sweep.over("v", v, np.arange(2000.0), Read(y), settle=0.01), None, name="early",
        clock=WallClock(), progress=False, flush_every=10_000, flush_interval=600,
    )
    """
)


@pytest.mark.timeout(60)
def test_sigkill_before_the_first_flush_loses_nothing_flushed(tmp_path):
    """A sequence's store appears at its first flush; a kill before it leaves the run
    listed (failed, nothing flushed) with its staged store beside it and no store a reader
    could mistake for data, so no flushed point can have been lost."""
    env = dict(os.environ, LABSTACK_DATA_DIR=str(tmp_path))
    proc = subprocess.Popen([sys.executable, "-c", CHILD_UNFLUSHED], env=env,
                            stderr=subprocess.PIPE)
    # the variables exist once the first point is taken; then some 20 points, none flushed
    _kill_when(proc, lambda: bool(list(tmp_path.glob("*/.data.zarr.staging/y/.zattrs"))),
               "took a point", after_s=0.2)

    (run,) = list_runs(tmp_path)
    assert run.status == "failed" and run.name == "early"
    assert run.info["points_flushed"] == 0 and run.info["points_total"] == 2000
    assert not run.store_path.exists()
    assert (run.path / ".data.zarr.staging" / "y" / ".zarray").is_file()
    with pytest.raises(FileNotFoundError, match=r"no data\.zarr yet.*points flushed: 0"):
        run.dataset()
