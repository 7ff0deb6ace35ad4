"""The recorded neural-tangents answers (tests/oracle_cache/, see ``ORACLE_CACHE`` in
conftest.py) are what neural-tangents answers: the slow suite asks it again, live."""

import numpy as np
import pytest
from conftest import ORACLE_CACHE, live_oracle, load_npz, oracle_key

REQUESTS = sorted(ORACLE_CACHE.glob("*.request.npz"))


def test_every_recorded_answer_is_named_by_its_request():
    """Each answer has its request, and the request (with today's oracle script and reference
    environment) hashes to the answer's name: a stale file, or an answer without its request,
    fails here with the remedy. (An answer that no test asks for any more is not detected;
    `make oracle-cache` rebuilds the directory from scratch.)"""
    answers = {p.name.removesuffix(".npz") for p in ORACLE_CACHE.glob("*.npz")} - {
        p.name.removesuffix(".npz") for p in REQUESTS
    }
    assert len(answers) >= 20, "tests/oracle_cache/ is nearly empty: run `make oracle-cache`"
    for key in answers:
        req = ORACLE_CACHE / f"{key}.request.npz"
        assert req.exists(), f"{key}.npz has no request: run `make oracle-cache`"
        assert oracle_key(load_npz(req)) == key, (
            f"{key}: the oracle script or reference environment changed since it was recorded; "
            "run `make oracle-cache`"
        )


@pytest.mark.slow
@pytest.mark.parametrize("request_path", REQUESTS, ids=lambda p: p.name[:12])
def test_recorded_answer_equals_the_live_oracle(request_path):
    """The live answer equals the recorded one, to 1e-8 (float64) or 1e-6 (float32) of the
    array's largest entry: 100× inside the tolerances the tests compare us with (1e-6, 1e-4),
    and loose enough for another CPU, whose XLA code may round differently (an ulp becomes
    √ulp through arccos at correlation 1). NaN entries (neural-tangents' float32 kernels of
    rectified monomials) may move between machines for the same reason: at most 1% of them."""
    want = load_npz(request_path.with_name(request_path.name.replace(".request", "")))
    got = live_oracle(load_npz(request_path))
    assert sorted(got) == sorted(want)
    for name in want:
        a, b = np.asarray(got[name]), np.asarray(want[name])
        assert a.shape == b.shape and a.dtype == b.dtype, name
        if not np.issubdtype(b.dtype, np.floating):
            np.testing.assert_array_equal(a, b, err_msg=name)
            continue
        assert np.sum(np.isnan(a) != np.isnan(b)) <= 0.01 * b.size, name
        ok = ~(np.isnan(a) | np.isnan(b))
        rtol = 1e-8 if b.dtype == np.float64 else 1e-6
        scale = np.max(np.abs(b[ok]), initial=0.0)
        np.testing.assert_allclose(a[ok], b[ok], rtol=0, atol=rtol * scale, err_msg=name)
