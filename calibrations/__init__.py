"""Calibration routines, one node per module (imported as ``labstack.calibrations``).

A node is a module that defines ``NAME`` (registered as an entry point). Nodes never
import each other (``tests/test_calibrations_imports.py``): what several need lives
in modules that are not nodes, procedures that drive the lab (:mod:`.fridge`) and
helpers (:mod:`._common`, :mod:`.cell_states`, :mod:`.virtual_bias`), and pure
numerics live in :mod:`labstack.fit`.
"""
