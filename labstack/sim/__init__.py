"""The virtual lab: a physics simulator of chip, readout chain and cryostat.

The physics (:mod:`~labstack.sim.dynamics`, :mod:`~labstack.sim.readout`,
:mod:`~labstack.sim.cryostat`, the ground truth in :mod:`~labstack.sim.truth`) knows
nothing of SCPI; :mod:`labstack.sim.instruments` are thin SCPI adapters over it.

Imports: clock, scpi_text only. Imported only by the PyVISA backend
(:mod:`labstack.visa`), the synthetic-data helpers of distributed, tests and
benchmarks: never by calibrations, the engine or the runner.
"""
