"""The 12-bit data set of Shwartz-Ziv & Tishby (2017), rebuilt from its icosahedron rule.

Shwartz-Ziv & Tishby, "Opening the black box of deep neural networks via information",
arXiv:1703.00810 (2017), train a 12-10-7-5-4-3-2 network on all 2¹² = 4096 binary inputs.
Each of the 12 bits sits on a vertex of an icosahedron (`ANTIPODES`, `NEIGHBOURS`). With

    k      = number of ones,
    n_adj  = number of edges of the icosahedron with both ends on,
    n_anti = number of antipodal pairs with both ends on,

the label is y = 1 ⇔ 30k − 3k² + 8·n_adj − 4·n_anti ≥ 120. This gives 2118 positives out of
4096, so H(Y) = I(X;Y) = 0.999157 bits, and reproduces the original label file bit for bit.
"""

import numpy as np

N_BITS = 12

#: Antipodal vertex pairs (0-based columns of ``x``).
ANTIPODES: tuple[tuple[int, int], ...] = ((0, 9), (1, 7), (2, 5), (3, 6), (4, 10), (8, 11))

#: The five neighbours of every vertex of the icosahedron.
NEIGHBOURS: dict[int, tuple[int, ...]] = {
    0: (1, 3, 5, 10, 11),
    1: (0, 2, 3, 4, 11),
    2: (1, 3, 4, 8, 9),
    3: (0, 1, 2, 8, 10),
    4: (1, 2, 6, 9, 11),
    5: (0, 6, 7, 10, 11),
    6: (4, 5, 7, 9, 11),
    7: (5, 6, 8, 9, 10),
    8: (2, 3, 7, 9, 10),
    9: (2, 4, 6, 7, 8),
    10: (0, 3, 5, 7, 8),
    11: (0, 1, 4, 5, 6),
}


def icosahedron_edges() -> np.ndarray:
    """The 30 edges (i, j), i < j, of the icosahedron given by `NEIGHBOURS`, shape (30, 2)."""
    return np.array([(i, j) for i, nb in NEIGHBOURS.items() for j in nb if i < j], dtype=np.int64)


def tishby_dataset() -> tuple[np.ndarray, np.ndarray]:
    """All 4096 inputs and their labels, ``(x, y)``.

    ``x`` has shape (4096, 12) and dtype int8: row i is the 12-bit binary form of i, most
    significant bit first. ``y`` has shape (4096,) and dtype int8:
    y = 1 ⇔ 30k − 3k² + 8·n_adj − 4·n_anti ≥ 120 (see the module docstring;
    Shwartz-Ziv & Tishby 2017).
    """
    i = np.arange(2**N_BITS)
    x = ((i[:, None] >> np.arange(N_BITS - 1, -1, -1)[None, :]) & 1).astype(np.int8)
    xi = x.astype(np.int64)
    k = xi.sum(axis=1)
    e = icosahedron_edges()
    n_adj = (xi[:, e[:, 0]] * xi[:, e[:, 1]]).sum(axis=1)
    a = np.array(ANTIPODES)
    n_anti = (xi[:, a[:, 0]] * xi[:, a[:, 1]]).sum(axis=1)
    y = (30 * k - 3 * k**2 + 8 * n_adj - 4 * n_anti >= 120).astype(np.int8)
    return x, y
