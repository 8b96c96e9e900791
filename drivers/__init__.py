"""Drivers for instruments that QCoDeS and qcodes_contrib_drivers do not ship (imported as ``labstack.drivers``).

Plain QCoDeS drivers that import nothing else of labstack, so they run against
hardware or the virtual lab alike.
"""
