"""`benchmarks.singular` (part of `make bench`) on a tiny size: it runs end to end, the two
classifiers agree, and the saved record has the fields the figure and README read. No timing
assertions: the machine is shared."""

import dataclasses
import json

import pytest

from benchmarks import singular


@pytest.mark.slow  # 13 s; like the other benchmarks' quick runs (argument errors stay fast)
def test_core_run_agrees_and_records_the_fields(tmp_path):
    record = singular.run((200,), repeats=1, quick=True, echo=False)
    paths = singular.write(record, tmp_path / "singular.json", tmp_path / "figs")
    assert {p.name for p in paths} == {"singular.json", "bench_singular.png", "bench_singular.pdf"}
    with open(tmp_path / "singular.json") as fh:
        saved = json.load(fh)

    assert set(saved) >= {"results", "summary_lines", "settings", "provenance"}
    res = saved["results"]
    assert res["table_build_s"] > 0
    (row,) = res["rows"]
    assert row["n"] == 200
    for method in ("ours", "koenigs_kernel"):
        assert set(row[method]) >= {"first_s", "steady_s", "times_s", "compile_s"}
    assert set(row["authors"]) >= {"steady_s", "times_s", "repeats"}
    assert row["ratio"] == pytest.approx(row["authors"]["steady_s"] / row["ours"]["steady_s"])
    assert set(row["accuracy"]) == {"ours", "authors", "bayes"}
    # Depth 100 against depth ∞: the scores differ by O(c^100) = O(2^-100) relative terms, so
    # labels can differ only at exact float ties; 99% allows 2 of the 200 test points.
    assert row["agreement"] >= 0.99
    assert row["n_disagree"] == round((1 - row["agreement"]) * 200)
    # both are real classifiers on this task (Bayes accuracy ≈ 0.92 at this prior), not
    # constant outputs: majority vote would score ≈ 0.6
    assert min(row["accuracy"]["ours"], row["accuracy"]["authors"]) > 0.8
    assert saved["settings"]["ns"] == [200]
    assert saved["provenance"]["host"]["cpus"] >= 1


def test_authors_dual_step_is_the_plain_formula():
    """The in-place step of the authors' method equals clip(ρ/2 + ρ³/2, −1, 1) written
    plainly, to rounding: each step differs by a few ulps (ρ³ by pow or by products), and
    φ̌' ≤ λ = 2 at most doubles an earlier difference per step, so after 5 steps the
    difference is below 2⁵ · 4 ulps ≈ 3e-14 relative; checked at 1e-13."""
    import numpy as np

    rho = np.linspace(-1, 1, 101)
    expect = rho.copy()
    for _ in range(5):
        expect = np.clip(0.5 * expect + 0.5 * expect**3, -1, 1)
    work = np.empty_like(rho)
    for _ in range(5):
        singular._dual_in_place(rho, work)
    np.testing.assert_allclose(rho, expect, rtol=1e-13, atol=0)
    assert rho[0] == -1 and rho[-1] == 1 and rho[50] == 0  # fixed points stay exact


@pytest.mark.parametrize("argv", [["--repeats", "0"], ["--ns", "1"], ["--repeats", "x"]])
def test_cli_names_the_bad_flag(argv, capsys):
    with pytest.raises(SystemExit) as e:
        singular.main(argv)
    assert e.value.code == 2
    assert argv[0] in capsys.readouterr().err
    with pytest.raises(SystemExit) as e:
        singular.main(["--help"])
    assert e.value.code == 0
    out = capsys.readouterr().out
    for f in dataclasses.fields(singular.Args):
        assert "--" + f.name.replace("_", "-") in out, f.name
