"""Experiment plumbing: CLI from a config dataclass, atomic writes, resume, provenance."""

from __future__ import annotations

import dataclasses
import json
import os
import signal
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest

from experiments import _common as common


@dataclasses.dataclass(frozen=True)
class Toy:
    width: int = dataclasses.field(default=500, metadata={"help": "hidden width"})
    lr: float = 1.0
    widths: tuple[int, ...] = (50, 1000)
    name: str = "relu"
    bias: bool = True
    seed: int | None = None

    def __post_init__(self):
        common.check_positive(width=self.width, lr=self.lr, widths=self.widths)


QUICK = {"width": 8, "widths": (4, 8), "seed": 3}


def test_cli_defaults_quick_and_flags():
    cfg, ns = common.parse_config("toy", Toy, QUICK, [])
    assert cfg == Toy() and not ns.quick
    cfg, _ = common.parse_config("toy", Toy, QUICK, ["--quick"])
    assert cfg == Toy(width=8, widths=(4, 8), seed=3)
    cfg, _ = common.parse_config(
        "toy", Toy, QUICK,
        ["--quick", "--width", "16", "--widths", "1,2,3", "--bias", "false", "--seed", "7",
         "--lr", "0.5", "--name", "erf"],
    )  # fmt: skip
    assert cfg == Toy(width=16, lr=0.5, widths=(1, 2, 3), name="erf", bias=False, seed=7)
    cfg, _ = common.parse_config("toy", Toy, QUICK, ["--quick", "--seed", "none"])
    assert cfg.seed is None  # an explicit None overrides the preset's 3


def test_cli_help_lists_every_field_with_default_and_type(capsys):
    with pytest.raises(SystemExit) as e:
        common.parse_config("toy", Toy, QUICK, ["--help"])
    assert e.value.code == 0
    out = capsys.readouterr().out
    for flag, shown in [
        ("--width", "default: 500"),
        ("--lr", "default: 1.0"),
        ("--widths", "default: 50,1000"),
        ("--bias", "default: True"),
        ("--seed", "default: None"),
        ("--quick", "small preset"),
    ]:
        assert flag in out and shown in out, (flag, shown)
    assert "hidden width" in out and "int" in out and "float" in out


@pytest.mark.parametrize(
    "argv, fragment",
    [
        (["--width", "abc"], "--width"),
        (["--width", "1.5"], "expected int"),
        (["--lr", "nan?"], "--lr"),
        (["--widths", ""], "--widths"),
        (["--bias", "maybe"], "true/false"),
        (["--width", "-3"], "--width must be positive"),
        (["--widths", "4,-1"], "--widths must be positive"),
        (["--no-such-flag"], "unrecognized arguments"),
    ],
)
def test_cli_bad_values_exit_2_naming_the_flag(argv, fragment, capsys):
    with pytest.raises(SystemExit) as e:
        common.parse_config("toy", Toy, QUICK, argv)
    assert e.value.code == 2
    assert fragment in capsys.readouterr().err


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
    cfg = Toy(width=8)
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
    store3 = common.ResultStore("toy", "r", Toy(width=9), root=tmp_path)
    store3.cached("p0", lambda: piece(10))
    assert calls[-1] == 10
    with pytest.raises(ValueError, match="piece key"):
        store.cached("../evil", lambda: piece(0))


def test_saved_run_has_provenance_and_is_reloaded(tmp_path):
    cfg = Toy(width=8)
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
    assert not common.ResultStore("toy", "r", Toy(width=9), root=tmp_path).finished()


def test_run_experiment_end_to_end_and_replot(tmp_path, monkeypatch):
    monkeypatch.setattr(common, "RESULTS_DIR", tmp_path / "results")
    monkeypatch.setattr(common, "FIGS_DIR", tmp_path / "figs")
    runs = []

    def run(cfg, store):
        runs.append(cfg)
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
    # Default settings write the committed figures.
    out = common.run_experiment("toy", Toy, QUICK, run, plot, [])
    assert out == tmp_path / "figs" and (tmp_path / "figs" / "toy.png").exists()
    # Other flags get their own run and never overwrite the paper's results.
    out = common.run_experiment("toy", Toy, QUICK, run, plot, ["--width", "5"])
    assert out.name.startswith("custom-") and (out.parent / f"{out.name}.npz").exists()
    for argv in (["--run", "../x"], ["--plot-only", "--force"]):
        with pytest.raises(SystemExit) as e:
            common.run_experiment("toy", Toy, QUICK, run, plot, argv)
        assert e.value.code == 2
    with pytest.raises(SystemExit) as e:
        common.run_experiment("toy", Toy, QUICK, run, plot, ["--width", "3", "--plot-only"])
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
