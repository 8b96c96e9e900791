"""Calibration routines, one node per module (imported as ``labstack.calibrations``)."""
