"""The one place where labstack wraps calls of objects it does not own.

The safety layer must act on calls that belong to other libraries' objects:

========================  ================================  =========================
layer                     wrapped method                    why
========================  ================================  =========================
``ramp``                  QCoDeS ``Parameter.set``          ramp within step and rate
``retry``                 ``VisaInstrument.write_raw`` /    retry what is safe to
                          ``ask_raw``, ``Parameter.get``    retry, reconnect
``guard``                 PyVISA ``Resource.write_raw``     refuse unsafe SCPI on the
                                                            wire, whatever sent it
``lock``                  ``VisaInstrument.write_raw`` /    one exchange at a time per
                          ``ask_raw``, ``Parameter.get`` /  instrument across threads
                          ``set`` (outermost)
========================  ================================  =========================

Neither QCoDeS nor PyVISA offers a hook for these, so the only way in is to replace
the bound method on that one object with a wrapper. :class:`Interceptors` is the
only code that does so: it records every replacement (object, method, layer and
the original), wraps a method at most once per layer (wrapping again rebuilds the
wrapper around the same original, e.g. a guard re-applied after a reconnect), and
can list and undo them. Each :class:`~labstack.station.LabStation` owns one, so a
reader who wants to know what labstack changed on a driver looks here and at
:meth:`Interceptors.describe`.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

Method = Callable[..., Any]


@dataclass(frozen=True)
class Interception:
    """One replaced method: on ``target``, ``method`` now calls ``wrapper``, which calls ``original``."""

    target: Any
    method: str
    layer: str
    original: Method
    wrapper: Method

    def describe(self) -> str:
        name = getattr(self.target, "full_name", None) or getattr(self.target, "name", None)
        what = name or getattr(self.target, "resource_name", None) or type(self.target).__name__
        return f"{self.layer}: {what}.{self.method}"


class Interceptors:
    """Every wrapper the safety layer installed on one station's drivers."""

    def __init__(self) -> None:
        self._by_key: dict[tuple[int, str, str], Interception] = {}

    def wrap(self, target: Any, method: str, layer: str, make: Callable[[Method], Method]) -> Method:
        """Replace ``target.method`` by ``make(original)``; returns the wrapper.

        ``original`` is the method as it was before this layer first wrapped it, so
        wrapping twice never stacks two copies of the same layer.
        """
        key = (id(target), method, layer)
        previous = self._by_key.get(key)
        original = previous.original if previous is not None else getattr(target, method)
        wrapper = make(original)
        setattr(target, method, wrapper)
        self._by_key[key] = Interception(target, method, layer, original, wrapper)
        return wrapper

    def is_wrapped(self, target: Any, method: str, layer: str) -> bool:
        return (id(target), method, layer) in self._by_key

    def original(self, target: Any, method: str, layer: str) -> Method:
        """The method as it was before ``layer`` wrapped it (the method itself if it did not)."""
        found = self._by_key.get((id(target), method, layer))
        return found.original if found is not None else getattr(target, method)

    def describe(self) -> list[str]:
        """One line per wrapped method, e.g. ``"ramp: qdac1_ch01_dc_constant_V.set"``."""
        return [i.describe() for i in self._by_key.values()]

    def undo_all(self) -> None:
        """Put every original method back (latest first)."""
        for interception in reversed(list(self._by_key.values())):
            setattr(interception.target, interception.method, interception.original)
        self._by_key.clear()

    def __len__(self) -> int:
        return len(self._by_key)
