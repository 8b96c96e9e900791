"""Sequence files as a newcomer writes them: the shipped examples, the errors, the README.

The examples in ``station_configs/sequences`` must load, dry-run and run on the
virtual lab; every malformed file must exit 2 with a message naming file, step and
key; and the README's key tables must say exactly what the loader accepts.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

import numpy as np
import pytest
import yaml

from labstack.cli import main
from labstack.data import list_runs, load_run
from labstack.measure import Read, Sequence, Set, Sweep, Trace, Wait, step_from_json
from labstack.measure.files import (
    CONVERTERS,
    VALUE_LISTS,
    WRAPPER_KEYS,
    SequenceFileError,
    find_sequence_file,
    load_sequence_file,
    shipped_sequences,
    step_keys,
    step_types,
)

ROOT = Path(__file__).parents[1]
README = ROOT / "README.md"
EXAMPLES = ROOT / "station_configs" / "sequences"
GOLDEN_RUNS = ROOT / "tests" / "golden" / "runs"

#: what each example's dry run must announce: point count and its data variables' layout
DRY_RUNS = {
    "iv.yaml": ["61 points", "samples(bias=61) x ('cell', 'sample')"],
    "map2d.yaml": ["225 points", "samples(v0=15, v1=15) x ('cell', 'sample')"],
    "trace.yaml": ["159 points", "T_mc_heat(t_heat=61)", "T_chip_cool(t_cool=91)"],
}


# ----------------------------------------------------------------- examples
def test_the_shipped_examples_are_the_ones_the_readme_names():
    assert set(shipped_sequences()) == set(DRY_RUNS)
    assert {p.name for p in EXAMPLES.iterdir()} == set(DRY_RUNS)
    section = readme_section()
    for name in DRY_RUNS:
        assert f"`{name}`" in section


@pytest.mark.parametrize("name", sorted(DRY_RUNS))
def test_each_example_loads_with_comments_and_dry_runs_by_name(name, tmp_path, monkeypatch, capsys):
    text = (EXAMPLES / name).read_text()
    assert text.count("#") > 15  # explained key by key
    spec = load_sequence_file(EXAMPLES / name)
    assert spec.name and spec.metadata
    monkeypatch.chdir(tmp_path)  # no such file here: the shipped one is used, and said so
    assert main(["measure", name, "--dry-run"]) == 0
    out = capsys.readouterr().out
    assert f"using the shipped example {EXAMPLES / name}" in out
    for expected in DRY_RUNS[name]:
        assert expected in out, out


def test_a_file_in_the_working_directory_wins_over_the_shipped_example(tmp_path, monkeypatch, capsys):
    (tmp_path / "iv.yaml").write_text(
        "sequence: {type: sweep, dim: v, setpoints: {qdac1.ch01.dc_constant_V: [0.0, 0.1]},"
        " body: [{type: read, param: ls372.ch06.temperature}]}\n"
    )
    monkeypatch.chdir(tmp_path)
    assert find_sequence_file("iv.yaml") == (Path("iv.yaml"), False)
    assert find_sequence_file("map2d") == (EXAMPLES / "map2d.yaml", True)
    assert main(["measure", "iv.yaml", "--dry-run"]) == 0
    out = capsys.readouterr().out
    assert "2 points" in out and "shipped" not in out


def test_an_unknown_name_exits_2_listing_the_examples(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    assert main(["measure", "ivv.yaml", "--dry-run"]) == 2
    err = capsys.readouterr().err
    assert "ivv.yaml: no such file" in err and "iv.yaml, map2d.yaml, trace.yaml" in err
    with pytest.raises(SequenceFileError, match="no such file"):
        find_sequence_file("sub/iv.yaml")  # a path with a folder is never a shipped name


def test_iv_example_runs_end_to_end_and_gives_cell_0_an_s_curve(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    data = tmp_path / "data"
    args = ["measure", "iv.yaml", "--seed", "4242", "--cells", "4", "--data-dir", str(data), "--no-progress"]
    assert main(args) == 0
    assert "completed" in capsys.readouterr().out
    (info,) = list_runs(data)
    run = load_run(info.id, data)
    assert run.name == "iv_cell0" and run.metadata["cell"] == 0
    samples = run.dataset().samples
    assert samples.dims == ("bias", "cell", "sample") and samples.shape == (61, 4, 1000)
    mean = samples.mean("sample")
    swing = float(mean.sel(cell=0)[-1] - mean.sel(cell=0)[0])
    assert swing > 3e-3  # -1 -> +1: twice the readout amplitude (>= 2 mV each)
    untouched = mean.sel(cell=[1, 2, 3])
    assert float(abs(untouched[-1] - untouched[0]).max()) < 1e-3  # other cells: flat
    level = (samples.sel(cell=0) > float(mean.sel(cell=0)[[0, -1]].mean())).mean("sample").values
    assert level[:5].max() < 0.05 and level[-5:].min() > 0.95
    assert np.all(np.diff(level) > -0.1)  # an S-curve rises, up to sampling noise


# --------------------------------------------------------- malformed files
SWEEP = "{type: sweep, dim: v, setpoints: {qdac1.ch01.dc_constant_V: [0.0, 0.1]}"
SWEEP_KEYS = "a sweep step has keys: type, dim, setpoints (required); body, settle, coord (optional)"

#: (file text, what the message must contain besides the file name); ``{f}`` is the file
MALFORMED = {
    "missing dim": (
        "sequence:\n  type: sweep\n  setpoints: {qdac1.ch01.dc_constant_V: [0.0, 0.1]}\n",
        ["{f}:2: sequence (sweep): missing key 'dim'", SWEEP_KEYS],
    ),
    "unknown key, misspelt": (
        f"sequence:\n  - {SWEEP},\n     setle: 0.5}}\n",
        ["{f}:3: sequence[0] (sweep): unknown key 'setle' (did you mean 'settle'?)", SWEEP_KEYS],
    ),
    "unknown key in a nested read": (
        "sequence:\n  - {type: wait, seconds: 1.0}\n"
        f"  - {SWEEP}, body: [{{type: read, parm: ls372.ch06.temperature}}]}}\n",
        ["{f}:3: sequence[1].body[0] (read): unknown key 'parm' (did you mean 'param'?)",
         "a read step has keys: type, param (required); dims, coords, name (optional)"],
    ),
    "missing key deep in the tree": (
        "sequence:\n  - type: sweep\n    dim: a\n    setpoints: {qdac1.ch01.dc_constant_V: [0.0]}\n"
        "    body:\n      - type: trace\n        dim: t\n        n: 2\n        body:\n"
        "          - {type: read, param: ls372.ch06.temperature}\n          - {type: set, param: x}\n",
        ["{f}:11: sequence[0].body[0].body[1] (set): missing key 'value'",
         "a set step has keys: type, param, value (required)"],
    ),
    "misspelt step type": (
        "sequence:\n  - {type: sweeep, dim: v}\n",
        ["{f}:2: sequence[0], key 'type': unknown step type 'sweeep' (did you mean 'sweep'?)",
         "step types: read, sequence, set, sweep, trace, wait"],
    ),
    "missing step type": (
        "sequence:\n  - {dim: v, setpoints: {}}\n",
        ["{f}:2: sequence[0]: missing key 'type'", "read, sequence, set, sweep, trace, wait"],
    ),
    "a step that is not a mapping": (
        "sequence:\n  - sweep\n",
        ["{f}:2: sequence[0]: a step is a mapping with 'type'", "got text 'sweep'"],
    ),
    "a body that is not a list": (
        f"sequence: {SWEEP}, body: {{type: wait, seconds: 1.0}}}}\n",
        ["sequence (sweep), key 'body': needs a list of steps, got a mapping"],
    ),
    "linspace with two arguments": (
        "sequence:\n  type: sweep\n  dim: v\n  setpoints:\n    qdac1.ch01.dc_constant_V: {linspace: [0, 1]}\n",
        ["{f}:5: sequence (sweep), key 'setpoints': qdac1.ch01.dc_constant_V: linspace: "
         "needs 3 values [start, stop, num], got 2"],
    ),
    "linspace with an unknown argument": (
        "sequence:\n  type: sweep\n  dim: v\n  setpoints:\n"
        "    qdac1.ch01.dc_constant_V: {linspace: {start: 0, stop: 1, count: 5}}\n",
        ["key 'setpoints': qdac1.ch01.dc_constant_V: linspace: unknown key 'count'",
         "linspace takes start, stop, num"],
    ),
    "linspace missing an argument": (
        "sequence: {type: sweep, dim: v, setpoints: {p.q: {linspace: {start: 0, stop: 1}}}}\n",
        ["key 'setpoints': p.q: linspace: missing key 'num'; linspace takes start, stop, num"],
    ),
    "linspace num not whole": (
        "sequence: {type: sweep, dim: v, setpoints: {p.q: {linspace: [0, 1, 2.5]}}}\n",
        ["sequence (sweep), key 'setpoints': p.q: linspace: num needs a whole number, got float 2.5"],
    ),
    "arange giving nothing": (
        "sequence: {type: sweep, dim: v, setpoints: {p.q: {arange: [1.0, 0.0, 0.1]}}}\n",
        ["key 'setpoints': p.q: arange: from 1 to 0 in steps of 0.1 gives no values"],
    ),
    "arange with unknown argument": (
        "sequence: {type: sweep, dim: v, setpoints: {p.q: {arange: {start: 0, stop: 1, steps: 0.1}}}}\n",
        ["arange: unknown key 'steps' (did you mean 'step'?); arange takes start, stop, step"],
    ),
    "value list with two forms": (
        "sequence: {type: sweep, dim: v, setpoints: {p.q: {linspace: [0, 1, 3], arange: [0, 1, 0.5]}}}\n",
        ["key 'setpoints': p.q: a value list is a list, {linspace: [start, stop, num]}"],
    ),
    "nested values": (
        "sequence: {type: sweep, dim: v, setpoints: {p.q: [[0, 1], [2, 3]]}}\n",
        ["key 'setpoints': p.q: values must be numbers (or text), got a list [0, 1]"],
    ),
    "no setpoints": (
        "sequence: {type: sweep, dim: v, setpoints: {}}\n",
        ["sequence (sweep), key 'setpoints': drives no parameter"],
    ),
    "settle written 1e-3": (
        f"sequence:\n  - {SWEEP}, settle: 1e-3}}\n",
        ["{f}:2: sequence[0] (sweep), key 'settle': needs a number, got text '1e-3'", "write 1.0e-3"],
    ),
    "negative wait": (
        "sequence: [{type: wait, seconds: -1.0}]\n",
        ["sequence[0] (wait), key 'seconds': must be >= 0, got -1.0"],
    ),
    "wait with an unknown key": (
        "sequence: [{type: wait, secs: 1.0}]\n",
        ["sequence[0] (wait): unknown key 'secs'", "a wait step has keys: type, seconds (required)"],
    ),
    "trace without n": (
        "sequence:\n  - type: trace\n    dim: t\n    interval: 1.0\n",
        ["{f}:2: sequence[0] (trace): missing key 'n'",
         "a trace step has keys: type, dim, n (required); interval, body (optional)"],
    ),
    "trace n not whole": (
        "sequence: [{type: trace, dim: t, n: 2.5}]\n",
        ["sequence[0] (trace), key 'n': needs a whole number, got float 2.5"],
    ),
    "read dims not a list": (
        "sequence: [{type: read, param: sampler.samples, dims: cell}]\n",
        ["sequence[0] (read), key 'dims': needs a list of dimension names, got 'cell'"],
    ),
    "coord of the wrong length": (
        "sequence: [{type: sweep, dim: v, setpoints: {p.q: [0, 1, 2]}, coord: [0, 1]}]\n",
        ["sequence[0] (sweep): Sweep 'v': coord has 2 values for 3 points"],
    ),
    "wrapper key misspelt": (
        "name: x\nsequense: []\n",
        ["{f}:2: top level: unknown key 'sequense' (did you mean 'sequence'?)",
         "a sequence file has keys: sequence (required); name, metadata (optional)"],
    ),
    "wrapper without sequence": (
        "name: x\nmetadata: {a: 1}\n",
        ["top level: missing key 'sequence'", "sequence (required); name, metadata (optional)"],
    ),
    "metadata not a mapping": (
        "metadata: [a]\nsequence: [{type: wait, seconds: 1.0}]\n",
        ["{f}:1: top level, key 'metadata': needs a mapping, got a list"],
    ),
    "metadata with a reserved key": (
        "metadata: {status: good}\nsequence: [{type: wait, seconds: 1.0}]\n",
        ["top level, key 'metadata': metadata key 'status' is reserved"],
    ),
    "an empty sequence": (
        "sequence: []\n",
        ["sequence: holds no steps"],
    ),
    "not a mapping": (
        "just some text\n",
        ["{f}:1: top level: expected a mapping with keys sequence (required); name, metadata (optional)"],
    ),
    "an empty file": (
        "",
        ["top level: expected a mapping", "got nothing (null)"],
    ),
    "a bare stored step with an unknown key": (
        '{"type": "wait", "seconds": 1.0, "until": 3}',
        ["sequence (wait): unknown key 'until'"],
    ),
    "not YAML at all": (
        "sequence: [\n",
        ["not valid yaml"],
    ),
}


@pytest.mark.parametrize("case", sorted(MALFORMED))
def test_a_malformed_file_exits_2_naming_file_step_and_key(case, tmp_path, capsys):
    text, expected = MALFORMED[case]
    path = tmp_path / "bad.yaml"
    path.write_text(text)
    assert main(["measure", str(path), "--dry-run"]) == 2
    err = capsys.readouterr().err
    assert err.startswith(f"labstack: {path}")
    for part in expected:
        assert part.replace("{f}", str(path)) in err, err
    with pytest.raises(SequenceFileError):
        load_sequence_file(path)


def test_a_json_file_is_checked_the_same_way_with_lines(tmp_path):
    path = tmp_path / "bad.json"
    step = {"type": "sequence", "steps": [{"type": "wait", "seconds": 1.0}, {"type": "read", "prm": "x"}]}
    path.write_text(json.dumps(step, indent=2))
    with pytest.raises(SequenceFileError) as err:
        load_sequence_file(path)
    assert str(err.value).startswith(f"{path}:10: sequence.steps[1] (read): unknown key 'prm'")


def test_a_file_that_does_not_fit_the_station_names_the_file(tmp_path, capsys):
    path = tmp_path / "far.yaml"
    path.write_text("sequence: {type: sweep, dim: v, setpoints: {qdac1.ch01.dc_constant_V: [0.0, 9.0]}}\n")
    assert main(["measure", str(path), "--dry-run"]) == 2
    err = capsys.readouterr().err
    assert f"labstack: {path}: Sweep 'v': value 9.0 is not allowed" in err


# ------------------------------------------------------------- round trips
def _every_step() -> Sequence:
    return Sequence(
        (
            Set("ls372.sample_heater.mode", "off"),
            Wait(2.5),
            Sweep(
                "v",
                {"qdac1.ch01.dc_constant_V": [0.0, 0.1, 0.2], "qdac1.ch02.dc_constant_V": [0.2, 0.1, 0.0]},
                (
                    Read("sampler.samples", dims=("cell", "sample"), coords={"cell": [0, 1]}, name="s"),
                    Trace("t", 3, 0.5, (Read("ls372.ch06.temperature"),)),
                    Sequence((Wait(0.0),)),
                ),
                settle=0.01,
                coord=[1, 2, 3],
            ),
        )
    )


@pytest.mark.parametrize("suffix", [".json", ".yaml"])
def test_what_to_dict_writes_loads_back_equal(suffix, tmp_path):
    seq = _every_step()
    path = tmp_path / f"stored{suffix}"
    path.write_text(json.dumps(seq.to_dict()) if suffix == ".json" else yaml.safe_dump(seq.to_dict()))
    loaded = load_sequence_file(path)
    assert loaded.sequence == seq and loaded.sequence.to_dict() == seq.to_dict()
    assert loaded.name == "stored" and loaded.metadata == {}


def test_the_golden_runs_sequences_load_as_files(tmp_path):
    stored = [load_run(r.name, GOLDEN_RUNS).attrs.get("sequence") for r in sorted(GOLDEN_RUNS.iterdir())]
    stored = [s for s in stored if s]
    assert len(stored) >= 3
    for i, text in enumerate(stored):
        path = tmp_path / f"run{i}.json"
        path.write_text(text)
        assert load_sequence_file(path).sequence == step_from_json(text)


def test_value_lists_expand_as_numpy_does(tmp_path):
    path = tmp_path / "v.yaml"
    path.write_text(
        "sequence:\n  type: sweep\n  dim: v\n  setpoints:\n"
        "    a.b: {linspace: [-1.0, 1.0, 5]}\n    c.d: {arange: {start: 0.0, stop: 0.5, step: 0.1}}\n"
    )
    (a, b) = load_sequence_file(path).sequence.setpoints.values()
    np.testing.assert_array_equal(a, np.linspace(-1.0, 1.0, 5))
    np.testing.assert_array_equal(b, np.arange(0.0, 0.5, 0.1))


# ------------------------------------------------------------------ README
def readme_section() -> str:
    text = README.read_text()
    start = text.index("## Sequence files\n")
    end = text.index("\n## ", start + 1)
    return text[start:end]


def readme_tables() -> dict[str, list[list[str]]]:
    """The section's tables by their first header cell: rows of cells, backticks removed."""
    tables: dict[str, list[list[str]]] = {}
    rows: list[list[str]] = []
    for line in [*readme_section().splitlines(), ""]:
        if line.startswith("|"):
            rows.append([c.strip().strip("`") for c in line.strip().strip("|").split("|")])
        elif rows:
            tables[rows[0][0]] = [r for r in rows[2:]]  # skip header and |---|
            rows = []
    return tables


def _default(cell: str) -> object:
    return yaml.safe_load(cell)


def test_readme_documents_every_step_key_with_its_default():
    rows = readme_tables()["type"]
    documented: dict[str, dict[str, object]] = {}
    for kind, key, required, default, _meaning in rows:
        assert required in ("required", "optional"), (kind, key, required)
        documented.setdefault(kind, {})[key] = "required" if required == "required" else _default(default)
    code: dict[str, dict[str, object]] = {}
    for kind in step_types():
        for key, spec in step_keys(kind).items():
            value = list(spec.default) if isinstance(spec.default, tuple) else spec.default
            code.setdefault(kind, {})[key] = "required" if spec.required else value
    assert documented == code


def test_readme_documents_the_wrapper_and_value_lists():
    wrapper = {row[0]: row[1] == "required" for row in readme_tables()["key"]}
    assert wrapper == WRAPPER_KEYS
    value_lists: dict[str, list[str]] = {}
    for form, key, _meaning in readme_tables()["form"]:
        value_lists.setdefault(form, []).append(key)
    assert value_lists == {k: list(v) for k, v in VALUE_LISTS.items()}


def test_readme_error_example_is_what_the_loader_says(tmp_path):
    section = readme_section()
    (example,) = re.findall(r"^    (iv\.yaml:\d+: .*)$", section, flags=re.M)
    text = (EXAMPLES / "iv.yaml").read_text()
    assert text.count("    settle:") == 1
    path = tmp_path / "iv.yaml"
    path.write_text(text.replace("    settle:", "    setle:"))
    with pytest.raises(SequenceFileError) as err:
        load_sequence_file(path)
    assert str(err.value) == example.replace("iv.yaml", str(path), 1)


def test_readme_example_block_loads(tmp_path):
    (block,) = re.findall(r"```yaml\n(.*?)```", readme_section(), flags=re.S)
    path = tmp_path / "readme.yaml"
    path.write_text(block)
    spec = load_sequence_file(path)
    assert spec.name == "iv_cell0" and isinstance(spec.sequence, Sequence) and len(spec.sequence) == 2


def test_every_step_key_has_a_check():
    keys = {key for kind in step_types() for key in step_keys(kind)}
    assert keys == set(CONVERTERS)
