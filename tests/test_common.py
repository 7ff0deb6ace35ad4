"""Experiment plumbing: CLI from a config dataclass (tyro), atomic writes, resume, provenance."""

from __future__ import annotations

import ast
import dataclasses
import importlib
import inspect
import json
import os
import re
import signal
import subprocess
import sys
import textwrap
import typing
from pathlib import Path
from typing import Annotated

import numpy as np
import pytest

from experiments import _common as common


@dataclasses.dataclass(frozen=True)
class Inner(common.ConfigBase):
    """a nested group"""

    steps: Annotated[int, common.Positive] = 10
    """gradient-descent steps"""
    rate: Annotated[float, common.Interval(gt=0, lt=1)] = 0.5
    """a rate in (0, 1)"""


@dataclasses.dataclass(frozen=True)
class Toy(common.ConfigBase):
    width: int = dataclasses.field(default=500, metadata={"help": "hidden width"})
    lr: Annotated[float, common.Positive] = 1.0
    """learning rate"""
    widths: Annotated[tuple[int, ...], common.Positive] = (50, 1000)
    """widths to sweep"""
    name: str = "relu"
    """activation"""
    bias: bool = True
    """use biases"""
    seed: Annotated[int | None, common.NonNegative] = None
    """random seed (None: fresh)"""
    inner: Inner = dataclasses.field(default_factory=Inner)

    def check(self):
        if self.width < min(self.widths):
            raise ValueError(f"--width must be >= min(--widths), got {self.width}")


QUICK = {"width": 8, "widths": (4, 8), "seed": 3, "inner": {"steps": 2}}


def test_cli_defaults_quick_and_flags():
    cfg, cli = common.parse_config("toy", Toy, QUICK, [])
    assert cfg == Toy() and not cli.quick
    cfg, _ = common.parse_config("toy", Toy, QUICK, ["--quick"])
    assert cfg == Toy(width=8, widths=(4, 8), seed=3, inner=Inner(steps=2))
    cfg, _ = common.parse_config(
        "toy", Toy, QUICK,
        ["--quick", "--width", "16", "--widths", "1", "2", "3", "--no-bias", "--seed", "7",
         "--lr", "0.5", "--name", "erf", "--rate", "0.25"],
    )  # fmt: skip
    assert cfg == Toy(
        width=16, lr=0.5, widths=(1, 2, 3), name="erf", bias=False, seed=7,
        inner=Inner(steps=2, rate=0.25),
    )  # fmt: skip
    cfg, _ = common.parse_config("toy", Toy, QUICK, ["--quick", "--seed", "None"])
    assert cfg.seed is None  # an explicit None overrides the preset's 3


def test_rules_apply_from_python_too():
    with pytest.raises(ValueError, match=r"--lr must be > 0, got -1"):
        Toy(lr=-1.0)
    with pytest.raises(ValueError, match=r"--lr must be > 0, got nan"):
        Toy(lr=float("nan"))
    with pytest.raises(ValueError, match=r"--widths needs one or more values, each > 0"):
        Toy(widths=())
    with pytest.raises(ValueError, match=r"--rate must be in \(0, 1\), got 1"):
        Inner(rate=1.0)
    with pytest.raises(ValueError, match=r"--width must be >= min\(--widths\)"):
        Toy(width=10)
    assert Toy(seed=None).seed is None and Toy(seed=0).seed == 0  # None skips the rule
    with pytest.raises(ValueError, match=r"--seed must be >= 0"):
        Toy(seed=-1)
    with pytest.raises(ValueError, match="has no field 'nope'"):
        common.with_overrides(Toy(), {"nope": 1})


def _help_text(text: str) -> str:
    """tyro's help with its box drawing removed and white space folded."""
    return " ".join(re.sub("[\u2500-\u257f]", " ", text).split())


def _field_docs(cls) -> dict[str, str]:
    """Each dataclass field's description: metadata help, else the string literal under it."""
    docs = {}
    body = ast.parse(textwrap.dedent(inspect.getsource(cls))).body[0].body
    for node, nxt in zip(body, body[1:]):
        if (
            isinstance(node, ast.AnnAssign)
            and isinstance(nxt, ast.Expr)
            and isinstance(nxt.value, ast.Constant)
            and isinstance(nxt.value.value, str)
        ):
            docs[node.target.id] = nxt.value.value
    out = {}
    for f in dataclasses.fields(cls):
        out[f.name] = f.metadata.get("help") or docs.get(f.name, "")
    return out


def _leaf_fields(cls) -> list[tuple[str, str]]:
    """(flag, description) of every non-nested field, recursing into nested configs."""
    hints = typing.get_type_hints(cls)
    out = []
    for name, doc in _field_docs(cls).items():
        if dataclasses.is_dataclass(hints[name]):
            out += _leaf_fields(hints[name])
        else:
            out.append((common.flag(name), doc))
    return out


def _main_help(main, capsys, monkeypatch) -> str:
    monkeypatch.setenv("COLUMNS", "200")
    with pytest.raises(SystemExit) as e:
        main(["--help"])
    assert e.value.code == 0
    return _help_text(capsys.readouterr().out)


def test_cli_help_lists_every_field_with_description_default_and_rule(capsys, monkeypatch):
    def main(argv):
        return common.parse_config("toy", Toy, QUICK, argv, doc="Toy experiment.\n\nMore.")

    out = _main_help(main, capsys, monkeypatch)
    for flag, shown in [
        ("--width INT", "hidden width (default: 500)"),
        ("--lr FLOAT", "learning rate (default: 1.0; > 0)"),
        ("--widths [INT [INT ...]]", "widths to sweep (default: 50 1000; > 0)"),
        ("--bias, --no-bias", "use biases (default: True)"),
        ("--seed {None}|INT", "random seed (None: fresh) (default: None; >= 0)"),
        ("--steps INT", "gradient-descent steps (default: 10; > 0)"),  # nested, no prefix
        ("--rate FLOAT", "a rate in (0, 1) (default: 0.5; in (0, 1))"),
        ("--quick, --no-quick", "start from the small smoke-test preset"),
        ("--plot-only, --no-plot-only", "re-plot from saved results"),
    ]:
        assert f"{flag} {shown}" in out, (flag, shown)
    assert "Toy experiment." in out and "a nested group" in out


@pytest.mark.parametrize("module", ["ibc", "ntk"])
def test_every_experiment_help_documents_every_field(module, capsys, monkeypatch):
    mod = importlib.import_module(f"experiments.{module}")
    out = _main_help(mod.main, capsys, monkeypatch)
    fields = _leaf_fields(mod.Config)
    assert len(fields) >= 10
    for flag, doc in fields:
        assert doc.strip(), f"{module}: {flag} has no description"
        assert re.search(re.escape(flag) + r"(?![\w-])", out), (module, flag)
        assert _help_text(doc) in out, (module, flag, doc)
    for flag in ("--quick", "--run", "--force", "--plot-only"):
        assert flag in out


TOY_BAD = [
    (["--width", "abc"], "--width"),  # wrong type
    (["--width", "1.5"], "--width"),
    (["--lr", "-1"], "--lr must be > 0"),  # rule
    (["--widths", "4", "-1"], "--widths needs one or more values, each > 0"),
    (["--widths"], "--widths"),
    (["--rate", "2"], "--rate must be in (0, 1)"),  # rule in a nested config
    (["--no-such-flag"], "--no-such-flag"),  # unknown flag
    (["--width", "20", "--widths", "50"], "--width must be >= min(--widths)"),  # cross-field
]


@pytest.mark.parametrize("argv, fragment", TOY_BAD)
def test_cli_bad_values_exit_2_naming_the_flag(argv, fragment, capsys):
    with pytest.raises(SystemExit) as e:
        common.parse_config("toy", Toy, QUICK, argv)
    assert e.value.code == 2
    assert fragment in _help_text(capsys.readouterr().err)


EXPERIMENT_BAD = [
    ("ibc", ["--mc-samples", "many"], "--mc-samples"),  # wrong type
    ("ibc", ["--mc-samples", "-5"], "--mc-samples must be > 0"),
    ("ibc", ["--k-values", "3", "1"], "--k-values needs one or more values, each >= 2"),
    ("ibc", ["--data-error", "2"], "--data-error must be in (0, 1)"),
    ("ibc", ["--no-such-flag", "1"], "--no-such-flag"),
    ("ibc", ["--evt-k", "60", "--evt-pairs", "100"], "--evt-k must be below --evt-pairs"),
    ("ibc", ["--mc-max-frequency", "1", "--mc-n", "9"], "--mc-n values must be below d = 5"),
    ("ntk", ["--lr", "abc"], "--lr"),
    ("ntk", ["--widths", "-3"], "--widths"),
    ("ntk", ["--no-such-flag"], "--no-such-flag"),
    ("ntk", ["--depth", "1"], "--depth"),
]


@pytest.mark.parametrize("module, argv, fragment", EXPERIMENT_BAD)
def test_experiment_bad_values_exit_2_naming_the_flag(module, argv, fragment, capsys):
    mod = importlib.import_module(f"experiments.{module}")
    with pytest.raises(SystemExit) as e:
        mod.main(argv)
    assert e.value.code == 2
    assert fragment in _help_text(capsys.readouterr().err)


def test_atomic_write_replaces_whole_file(tmp_path):
    p = tmp_path / "sub" / "a.npz"
    common.save_npz_atomic(p, {"x": np.arange(3)})
    common.save_npz_atomic(p, {"x": np.arange(5)})
    assert common.load_npz(p)["x"].tolist() == [0, 1, 2, 3, 4]
    assert [f.name for f in p.parent.iterdir()] == ["a.npz"]  # no temp files left


def test_atomic_write_failing_midway_leaves_old_file_and_no_temp(tmp_path, monkeypatch):
    p = tmp_path / "a.bin"
    common.atomic_write_bytes(p, b"old")

    def boom(fd):
        raise OSError("disk full")

    monkeypatch.setattr(os, "fsync", boom)
    with pytest.raises(OSError, match="disk full"):
        common.atomic_write_bytes(p, b"new content")
    assert p.read_bytes() == b"old"
    assert sorted(f.name for f in tmp_path.iterdir()) == ["a.bin"]


def test_atomic_write_killed_midway_leaves_no_partial_file(tmp_path):
    """A process SIGKILLed while writing a large file never exposes a partial target."""
    target = tmp_path / "big.bin"
    script = textwrap.dedent(
        f"""
        import os, sys
        sys.path.insert(0, {str(common.REPO_ROOT)!r})
        from experiments import _common
        real_write = None
        import io
        class Slow(io.FileIO):
            pass
        # Write 64 MiB in chunks and announce when half is written.
        orig_fdopen = os.fdopen
        def fdopen(fd, mode):
            fh = orig_fdopen(fd, mode)
            w = fh.write
            def write(data):
                half = len(data) // 2
                w(data[:half]); fh.flush()
                print("HALF", flush=True)
                sys.stdin.readline()  # parent kills us here
                return w(data[half:])
            fh.write = write
            return fh
        os.fdopen = fdopen
        _common.atomic_write_bytes({str(target)!r}, b"x" * (64 << 20))
        """
    )
    proc = subprocess.Popen(
        [sys.executable, "-c", script], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True
    )
    assert proc.stdout.readline().strip() == "HALF"
    temps = [f for f in tmp_path.iterdir() if f.name.endswith(".tmp")]
    assert temps and temps[0].stat().st_size == 32 << 20  # the write really was half done
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert not target.exists()


def test_result_store_resumes_without_redoing_finished_pieces(tmp_path):
    cfg = Toy(width=8, widths=(8,))
    calls = []

    def piece(i):
        calls.append(i)
        return {"v": np.full(3, i)}

    store = common.ResultStore("toy", "r", cfg, root=tmp_path)
    for i in range(2):  # "interrupted" after two of four pieces
        store.cached(f"p{i}", lambda i=i: piece(i))
    store2 = common.ResultStore("toy", "r", cfg, root=tmp_path)
    out = [store2.cached(f"p{i}", lambda i=i: piece(i))["v"][0] for i in range(4)]
    assert out == [0, 1, 2, 3]
    assert calls == [0, 1, 2, 3]  # pieces 0 and 1 were loaded, not recomputed
    assert (store2.n_loaded, store2.n_computed) == (2, 2)
    # A different config does not reuse stale pieces.
    store3 = common.ResultStore("toy", "r", Toy(width=9, widths=(8,)), root=tmp_path)
    store3.cached("p0", lambda: piece(10))
    assert calls[-1] == 10
    with pytest.raises(ValueError, match="piece key"):
        store.cached("../evil", lambda: piece(0))


def test_saved_run_has_provenance_and_is_reloaded(tmp_path):
    cfg = Toy(width=8, widths=(8,))
    store = common.ResultStore("toy", "r", cfg, root=tmp_path)
    assert not store.finished()
    meta = store.save({"a": np.ones(2)}, wall_time_s=1.25)
    assert store.finished()
    on_disk = json.loads(store.json.read_text())
    assert on_disk == json.loads(json.dumps(meta))
    for key in ("config", "config_hash", "git", "versions", "device", "wall_time_s", "host"):
        assert key in on_disk, key
    assert on_disk["config"]["width"] == 8 and on_disk["wall_time_s"] == 1.25
    assert on_disk["versions"]["jax"] != "not installed"
    assert on_disk["device"]["platform"] == "cpu"
    assert "commit" in on_disk["git"]
    assert store.load()["a"].tolist() == [1.0, 1.0]
    # Another config is not "finished".
    assert not common.ResultStore("toy", "r", Toy(width=9, widths=(8,)), root=tmp_path).finished()


def test_run_experiment_end_to_end_and_replot(tmp_path, monkeypatch):
    monkeypatch.setattr(common, "RESULTS_DIR", tmp_path / "results")
    monkeypatch.setattr(common, "FIGS_DIR", tmp_path / "figs")
    runs = []

    pieces = []

    def piece():
        pieces.append(1)
        return {"p": np.ones(2)}

    def run(cfg, store):
        runs.append(cfg)
        store.cached("piece", piece, depends=cfg.width)
        return {"y": np.arange(cfg.width)}

    def plot(results, cfg):
        plt = common.pyplot()
        fig, ax = plt.subplots()
        ax.plot(results["y"])
        return {"toy": fig}

    out = common.run_experiment("toy", Toy, QUICK, run, plot, ["--quick"])
    assert out == tmp_path / "results" / "toy" / "quick"
    assert (out / "toy.png").stat().st_size > 1000 and (out / "toy.pdf").exists()
    common.run_experiment("toy", Toy, QUICK, run, plot, ["--quick", "--plot-only"])
    assert len(runs) == 1  # re-plot loaded the saved results
    common.run_experiment("toy", Toy, QUICK, run, plot, ["--quick", "--force"])
    assert len(runs) == 2
    assert len(pieces) == 2  # --force recomputes the pieces too, not only the assembly
    # Default settings write the committed figures.
    out = common.run_experiment("toy", Toy, QUICK, run, plot, [])
    assert out == tmp_path / "figs" and (tmp_path / "figs" / "toy.png").exists()
    # Other flags get their own run and never overwrite the paper's results.
    out = common.run_experiment("toy", Toy, QUICK, run, plot, ["--width", "5000"])
    assert out.name.startswith("custom-") and (out.parent / f"{out.name}.npz").exists()
    for argv in (["--run", "../x"], ["--plot-only", "--force"]):
        with pytest.raises(SystemExit) as e:
            common.run_experiment("toy", Toy, QUICK, run, plot, argv)
        assert e.value.code == 2
    with pytest.raises(SystemExit) as e:
        common.run_experiment("toy", Toy, QUICK, run, plot, ["--width", "3000", "--plot-only"])
    assert e.value.code == 2


def test_repo_layout_has_the_documented_entry_points():
    root = Path(common.REPO_ROOT)
    make = (root / "Makefile").read_text()
    for target in ("setup:", "test:", "test-all:", "reference:", "figs:", "fig-ntk:", "bench:",
                   "lint:", "clean:"):  # fmt: skip
        assert target in make, target
    head = (root / "README.md").read_text().splitlines()[:15]
    assert any("make fig-ntk" in line for line in head)
    assert any("make test" in line for line in head)
    assert "make test" in (root / ".ci" / "run").read_text()


@pytest.mark.parametrize("argv", [["--repeats", "0"], ["--only", "C"], ["--repeats", "x"]])
def test_benchmark_cli_is_tyro_and_names_the_bad_flag(argv, capsys):
    """`make bench`'s CLI comes from the same library: bad values exit 2 naming the flag, and
    --help documents every field."""
    import dataclasses

    from benchmarks import kernels

    with pytest.raises(SystemExit) as e:
        kernels.main(argv)
    assert e.value.code == 2
    assert argv[0] in capsys.readouterr().err
    with pytest.raises(SystemExit) as e:
        kernels.main(["--help"])
    assert e.value.code == 0
    out = capsys.readouterr().out
    for f in dataclasses.fields(kernels.Args):
        assert "--" + f.name.replace("_", "-") in out, f.name
