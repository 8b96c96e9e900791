"""PyVISA backend ``@labstack``: PyVISA imports this module to find the virtual lab.

``pyvisa.ResourceManager("@labstack")`` (or ``"lab.json@labstack"``) looks up a
module named ``pyvisa_labstack`` and takes its ``WRAPPER_CLASS``, the same
convention pyvisa-py and pyvisa-sim follow. The implementation lives in
:mod:`labstack.visa.virtual_lab`.
"""

from labstack.visa.virtual_lab import LabstackVisaLibrary

WRAPPER_CLASS = LabstackVisaLibrary

__all__ = ["WRAPPER_CLASS"]
