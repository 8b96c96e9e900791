"""Beyond one machine: many chips, many runs and very big chips on Dask distributed.

- :mod:`labstack.distributed.chips`: calibrate many chips (each its own station,
  built and closed inside a worker process) as Dask tasks into one data directory;
  :mod:`labstack.distributed.specs` parses which chips.
- :mod:`labstack.distributed.replay`: re-fit (or otherwise replay) many stored runs.
- :mod:`labstack.distributed.scurves`: S-curve fits of 10^5-10^6 cells, vectorized
  and chunked over zarr with xarray + dask arrays, in bounded memory.
- :mod:`labstack.distributed.cluster`: a client for a scheduler address, or a
  ``LocalCluster`` sized to the machine.

Dask is the engine; labstack adds only what is specific to a lab: which work may
share a process (never two stations at once: QCoDeS instruments are
process-global) and where results land.

Imports: session, visa, data, fit, sim (for synthetic S-curves). Imported by cli.
"""
