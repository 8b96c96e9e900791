"""One exchange at a time per instrument, whichever thread of this process asks.

A QCoDeS instrument owns one VISA session, and a query is a write then a read on
it. Two threads sharing a station (a notebook reading temperatures while a
calibration runs in another thread, a watch loop and its status poller) would
otherwise interleave: one thread's read could take the other's answer. Each VISA
instrument of a station gets a re-entrant lock held around its ``write_raw`` and
``ask_raw`` and around every parameter's ``get`` and ``set`` (layer ``lock`` of
:mod:`labstack.safety.intercept`, installed last, so a retried or ramped call is
one whole exchange too; the sampler's binary-block read happens inside its
parameter's ``get``). The lock is per instrument, so a slow acquisition on the
sampler never holds up the thermometer. Nested calls only ever go from an
instrument to the station clock, never back, so the locks cannot deadlock.

Across processes nothing is needed here: each process has its own connections,
and a served lab (:mod:`labstack.service.server`) executes each message whole.
"""

from __future__ import annotations

import threading
from collections.abc import Iterable
from typing import Any

from qcodes.instrument import IPInstrument, VisaInstrument
from qcodes.parameters import Parameter

from labstack.safety.intercept import Interceptors, Method


def install_locks(instruments: Iterable[Any], interceptors: Interceptors) -> dict[str, threading.RLock]:
    """Give every VISA instrument in ``instruments`` its lock; returns them by instrument name."""
    locks: dict[str, threading.RLock] = {}
    for instrument in instruments:
        if not isinstance(instrument, VisaInstrument | IPInstrument):
            continue
        lock = locks[instrument.name] = threading.RLock()
        for method in ("write_raw", "ask_raw"):
            interceptors.wrap(instrument, method, "lock", _locked(lock))
        for parameter in _parameters(instrument):
            if parameter.gettable:
                interceptors.wrap(parameter, "get", "lock", _locked(lock))
            if parameter.settable:
                interceptors.wrap(parameter, "set", "lock", _locked(lock))
    return locks


def _locked(lock: threading.RLock) -> Any:
    def make(original: Method) -> Method:
        def locked(*args: Any, **kwargs: Any) -> Any:
            with lock:
                return original(*args, **kwargs)

        return locked

    return make


def _parameters(instrument: Any) -> list[Parameter]:
    out: list[Parameter] = []
    stack = [instrument]
    while stack:
        node = stack.pop()
        out.extend(p for p in getattr(node, "parameters", {}).values() if isinstance(p, Parameter))
        stack.extend(getattr(node, "submodules", {}).values())
    return out
