"""Drivers for instruments that QCoDeS and qcodes_contrib_drivers do not ship (imported as ``labstack.drivers``)."""
