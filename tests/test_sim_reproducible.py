"""Same seed and same commands give the same data, bit for bit, through the whole virtual lab."""

from __future__ import annotations

import numpy as np

from labstack.sim.lab import VirtualLab


def session(seed: int) -> np.ndarray:
    lab = VirtualLab.from_description(f"seed={seed},cells=16,topology=chain,crosstalk=0.02")
    lab.set_dac(1, 3, 0.1)
    lab.set_dac(2, 1, 0.4)  # a coupler
    first = lab.acquire(500, 20e-6)
    lab.sleep(12.0)  # fridge, drift and a long wait for the cells
    second = lab.acquire(200, 1e-7)  # faster than the amplifier's low-pass
    return np.concatenate([first, second])


def test_same_seed_same_commands_same_bits() -> None:
    a, b = session(7), session(7)
    assert a.dtype == np.float32 and a.shape == (700, 16)
    assert np.array_equal(a.view(np.uint32), b.view(np.uint32))
    assert not np.array_equal(a, session(8))
