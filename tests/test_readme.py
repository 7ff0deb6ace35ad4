"""The README's Python examples run as written."""

import re
from pathlib import Path

import pytest

README = Path(__file__).resolve().parent.parent / "README.md"
BLOCKS = re.findall(r"```python\n(.*?)```", README.read_text(), flags=re.S)


def test_readme_has_one_example_per_module():
    assert len(BLOCKS) >= 2
    text = "\n".join(BLOCKS)
    for module in ("theory.kernels", "theory.complexity"):
        assert f"from {module}" in text, module


@pytest.mark.parametrize("i", range(len(BLOCKS)))
def test_readme_example_runs(i, capsys):
    namespace = {}
    exec(compile(BLOCKS[i], f"README block {i}", "exec"), namespace)
    if "ibc" in namespace:
        assert f"{namespace['ibc'].bits:.4e}" in capsys.readouterr().out
        assert abs(namespace["ibc"].bits / 1.4848e16 - 1) < 1e-4
    if "f_train" in namespace:
        import numpy as np

        # At t = ∞ gradient flow interpolates the training targets.
        np.testing.assert_allclose(namespace["f_train"], namespace["y_train"], atol=1e-3)
        assert namespace["theta_hat"].shape == (20, 20)
