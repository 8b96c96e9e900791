"""Measurement sequences from description files (JSON or YAML), for ``labstack measure``.

A file holds either one step (``{"type": "sweep", ...}``, the form
:meth:`labstack.measure.Step.to_dict` writes and every run stores) or a wrapper::

    name: iv_curve                  # run name (default: the file's stem)
    metadata: {sample: A3}          # stored with the run
    sequence:                       # the step, or a list of steps
      type: sweep
      dim: v
      setpoints: [[qdac1.ch01.dc_constant_V, {linspace: [-0.5, 0.5, 11]}]]
      body: [{type: read, param: ls372.ch06.temperature}]

Value lists may be written ``{linspace: [start, stop, n]}`` or ``{arange: [start, stop, step]}``.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import yaml

from labstack.measure.sequence import Sequence, Step, step_from_dict


class SequenceFileError(ValueError):
    """A description file that is not a sequence; the message names the file."""


@dataclass
class SequenceFile:
    name: str
    sequence: Step
    metadata: dict[str, Any] = field(default_factory=dict)


def _expand(x: Any) -> Any:
    if isinstance(x, dict) and len(x) == 1 and next(iter(x)) in ("linspace", "arange"):
        kind, args = next(iter(x.items()))
        return getattr(np, kind)(*args).tolist()
    if isinstance(x, dict):
        return {k: _expand(v) for k, v in x.items()}
    if isinstance(x, list):
        return [_expand(v) for v in x]
    return x


def load_sequence_file(path: str | Path) -> SequenceFile:
    path = Path(path)
    try:
        text = path.read_text()
    except OSError as exc:
        raise SequenceFileError(f"{path}: {exc.strerror}") from None
    try:
        doc = json.loads(text) if path.suffix == ".json" else yaml.safe_load(text)
    except (json.JSONDecodeError, yaml.YAMLError) as exc:
        raise SequenceFileError(f"{path}: not valid {path.suffix.lstrip('.') or 'YAML'}: {exc}") from None
    if not isinstance(doc, dict | list):
        raise SequenceFileError(f"{path}: expected a sequence step or a mapping with 'sequence'")
    name, metadata = path.stem, {}
    if isinstance(doc, dict) and "sequence" in doc:
        name = str(doc.get("name") or name)
        metadata = dict(doc.get("metadata") or {})
        doc = doc["sequence"]
    doc = _expand(doc)
    try:
        if isinstance(doc, list):
            step: Step = Sequence(tuple(step_from_dict(d) for d in doc))
        else:
            step = step_from_dict(doc)
    except (KeyError, TypeError, ValueError) as exc:
        raise SequenceFileError(f"{path}: not a sequence: {type(exc).__name__}: {exc}") from None
    return SequenceFile(name, step, metadata)
