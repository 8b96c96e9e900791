"""Placeholder; replaced by the PyVISA backend implementation."""


class LabstackVisaLibrary:  # pragma: no cover - replaced shortly
    pass
