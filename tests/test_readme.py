"""The README's Python examples run as written and print what the README says they print.

A trailing comment on a ``print`` line (``print(...)   # 1.4847e+16``) is the README's
promise of the output: every number in it must appear, as written, in what the block prints.
A trailing comment ending in a shape on an assignment (``x = ...  # (5, 20)``, or
``k = ...  # .nngp, .ntk: (20, 20)``) promises the shape of that variable (or of the named
attributes).
"""

import re
from pathlib import Path

import numpy as np
import pytest

README = Path(__file__).resolve().parent.parent / "README.md"
BLOCKS = re.findall(r"```python\n(.*?)```", README.read_text(), flags=re.S)

NUMBER = r"[-+]?(?:\d+\.?\d*|\.\d+)(?:[eE][-+]?\d+)?"
SHAPE = re.compile(r"\((\d+(?:,\s*\d+)*),?\)\s*$")


def printed_numbers(block: str) -> list[str]:
    """Numbers promised by ``# ...`` comments on lines that call ``print``."""
    out = []
    for line in block.splitlines():
        code, sep, comment = line.partition("#")
        if sep and "print(" in code:
            out += re.findall(NUMBER, comment)
    return out


def promised_shapes(block: str) -> list[tuple[str, tuple[str, ...], tuple[int, ...]]]:
    """(variable, attributes, shape) from ``name = ...  # [.a, .b:] ... (n, m)`` lines."""
    out = []
    for line in block.splitlines():
        code, sep, comment = line.partition("#")
        m = re.match(r"\s*([A-Za-z_]\w*)\s*=", code)
        s = SHAPE.search(comment) if sep else None
        if m and s:
            attrs = tuple(re.findall(r"\.(\w+)", comment.split(":")[0])) if ":" in comment else ()
            out.append((m.group(1), attrs, tuple(int(v) for v in s.group(1).split(","))))
    return out


def test_readme_has_one_example_per_module_and_promises_output():
    assert len(BLOCKS) >= 2
    text = "\n".join(BLOCKS)
    for module in (
        "theory.kernels",
        "theory.singular",
        "theory.complexity",
        "theory.information",
        "theory.attention",
    ):
        assert f"from {module}" in text, module
    # The checks below must have something to check.
    assert sum(len(printed_numbers(b)) for b in BLOCKS) >= 1
    assert sum(len(promised_shapes(b)) for b in BLOCKS) >= 1


@pytest.mark.parametrize("i", range(len(BLOCKS)))
def test_readme_example_runs_and_prints_what_it_says(i, capsys):
    namespace = {}
    exec(compile(BLOCKS[i], f"README block {i}", "exec"), namespace)
    out = capsys.readouterr().out
    for number in printed_numbers(BLOCKS[i]):
        # As a whole token: the README's 1.4847e+16 must not match 21.4847e+16 or 1.48471.
        pattern = rf"(?<![\d.]){re.escape(number)}(?![\d])"
        assert re.search(pattern, out), f"README promises {number}; the block printed {out!r}"
    for name, attrs, shape in promised_shapes(BLOCKS[i]):
        targets = [getattr(namespace[name], a) for a in attrs] or [namespace[name]]
        for t in targets:
            assert np.shape(t) == shape, (name, attrs, np.shape(t), shape)
    if "f_train" in namespace:
        # At t = ∞ gradient flow interpolates the training targets.
        np.testing.assert_allclose(namespace["f_train"], namespace["y_train"], atol=1e-3)
