"""Every test's virtual lab is its own, whichever copy of the conftest made its description.

pytest imports ``tests/conftest.py`` as ``conftest``; a test module that imports
``tests.conftest`` gets a second copy with its own instance counter. When the two
counters stood at the same count, a fixture and a test made the same description,
and PyVISA handed the second test the first one's lab, already used.
"""

from __future__ import annotations

import itertools
import sys

import pytest

import tests.conftest as imported


def test_both_copies_of_the_conftest_give_different_labs(monkeypatch):
    fixture_copy = sys.modules.get("conftest")
    if fixture_copy is None or fixture_copy is imported:
        pytest.fail("expected pytest's own copy of tests/conftest.py beside tests.conftest")
    for copy in (fixture_copy, imported):  # both counters at the same count
        monkeypatch.setattr(copy, "_instances", itertools.count(1000))
    ours, theirs = imported.lab_description(seed=5, cells=4), fixture_copy.lab_description(seed=5, cells=4)
    assert ours != theirs
    assert imported.lab_of(ours) is not imported.lab_of(theirs)
