"""Fits with honest uncertainties. Each fit is a pure function of data: it never touches an instrument."""

from labstack.fit.result import FitResult

__all__ = ["FitResult"]
