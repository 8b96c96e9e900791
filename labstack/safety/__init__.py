"""Safety and robustness: what labstack refuses, how it survives faults, how a run is stopped.

* :mod:`~labstack.safety.config` reads the station file's ``labstack.ramps``,
  ``interlocks``, ``suspenders``, ``safe_state`` and ``retry`` sections.
* :mod:`~labstack.safety.ramp` ramps DAC set-points within a maximum step and rate
  on the station clock, starting from the value read back from the instrument;
  :mod:`~labstack.safety.array_ramp` ramps a DAC array's block writes, every element in its rules.
* :mod:`~labstack.safety.guard` checks every SCPI message written to a guarded
  instrument (DAC voltages, heater range and set-point), whatever code path sent it;
  :mod:`~labstack.safety.array_dialect` checks every element of a DAC array's block write.
* :mod:`~labstack.safety.retry` retries what is safe to retry, with backoff on the
  station clock, reconnects dropped sessions, and otherwise raises
  :class:`InstrumentFault` naming the instrument and the command.
* :mod:`~labstack.safety.control` pauses, resumes and aborts runs (Jupyter, CLI
  control file, suspenders on watched signals) and leaves the station safe on abort.
* :mod:`~labstack.safety.intercept` is the one mechanism that wraps a driver's
  methods (parameter ``set``/``get``, instrument and VISA ``write_raw``), listed in one place.

Limits, ramps and interlocks also narrow the QCoDeS parameters' validators, so a
sequence that would break one fails its dry run (:mod:`labstack.measure.plan`).

Imports: clock, scpi_text. Imported by station (which installs it) and above.
"""

from labstack.safety.errors import InstrumentFault, RunAborted, SafetyError

__all__ = ["InstrumentFault", "RunAborted", "SafetyError"]
