"""Example data sets: small ones with no dependencies, and the handwritten
digits through scikit-learn (the `data` extra)."""
from __future__ import annotations

import math
import random
from collections.abc import Sequence
from typing import TypeVar

T = TypeVar("T")
"""The type of a sample's inputs in train_test_split()."""
U = TypeVar("U")
"""The type of a sample's target in train_test_split()."""

LECTURE_XS = [[2.0, 3.0, -1.0], [3.0, -1.0, 0.5], [0.5, 1.0, 1.0], [1.0, 1.0, -1.0]]
"""The inputs of the lecture's four samples (use lecture_example() for a copy)."""
LECTURE_YS = [1.0, -1.0, -1.0, 1.0]
"""The desired outputs of the lecture's four samples."""


def lecture_example() -> tuple[list[list[float]], list[float]]:
    """The four-sample set from micrograd's lecture.

    Returns:
        The inputs xs, four rows of three floats, and the targets ys, four
            of -1 or +1, as new lists.
    """
    return [list(x) for x in LECTURE_XS], list(LECTURE_YS)


def make_moons(n_samples: int = 100, noise: float = 0.1,
               seed: int | None = None) -> tuple[list[list[float]], list[int]]:
    """Two interleaving half circles, as scikit-learn's make_moons builds them.

    Args:
        n_samples: The number of samples, an int >= 2 (half of them, rounded
            down, in the first moon).
        noise: The standard deviation of the Gaussian noise added to each
            coordinate, >= 0.
        seed: The seed of the random numbers; None for fresh ones.

    Returns:
        The inputs X, a list of [x0, x1] rows, and the labels y, a list of
            -1 or +1, shuffled.

    Raises:
        ValueError: `n_samples` is not an int >= 2, or `noise` is negative
            or NaN.

    Examples:
        >>> X, y = make_moons(100, noise=0.1, seed=0)
        >>> len(X), sorted(set(y))
        (100, [-1, 1])
    """
    if not isinstance(n_samples, int) or isinstance(n_samples, bool) or n_samples < 2:
        raise ValueError(f"n_samples must be an int >= 2, not {n_samples!r}")
    if not noise >= 0:
        raise ValueError(f"noise must be >= 0, not {noise!r}")
    rng = random.Random(seed)
    n_out = n_samples // 2
    n_in = n_samples - n_out

    def linspace(n):
        return [math.pi * i / (n - 1) if n > 1 else 0.0 for i in range(n)]

    points = [([math.cos(t), math.sin(t)], -1) for t in linspace(n_out)]
    points += [([1 - math.cos(t), 1 - math.sin(t) - 0.5], 1) for t in linspace(n_in)]
    rng.shuffle(points)
    X = [[x0 + rng.gauss(0.0, noise), x1 + rng.gauss(0.0, noise)] for (x0, x1), _ in points]
    y = [label for _, label in points]
    return X, y


def load_digits() -> tuple[list[list[float]], list[int]]:
    """The UCI handwritten digits bundled with scikit-learn (no download).

    1,797 samples of 8x8 pixels, classes 0-9.  Needs the `data` extra:
    pip install 'mini-autograd[data]'.

    Returns:
        The inputs X, a list of rows of 64 floats scaled to [0, 1], and the
            labels y, a list of ints from 0 to 9.

    Raises:
        ImportError: scikit-learn is not installed.
    """
    try:
        from sklearn.datasets import load_digits as sklearn_load_digits
    except ImportError:
        raise ImportError("load_digits() reads scikit-learn's bundled copy of the digits: "
                          "install the data extra, pip install 'mini-autograd[data]'") from None
    digits = sklearn_load_digits()
    X = [[float(p) / 16.0 for p in row] for row in digits.data]
    y = [int(t) for t in digits.target]
    return X, y


def train_test_split(xs: Sequence[T], ys: Sequence[U], test_size: float = 0.25,
                     seed: int | None = None) -> tuple[list[T], list[T], list[U], list[U]]:
    """Split samples at random into a training and a test part.

    Args:
        xs: The samples' inputs.
        ys: The samples' targets, as many.
        test_size: A float fraction in (0, 1) of the samples (rounded up),
            or an int number of samples, for the test part.
        seed: The seed of the shuffle; None for a fresh one.

    Returns:
        The tuple (xs_train, xs_test, ys_train, ys_test) of new lists, in
            the order of scikit-learn's function of the same name.

    Raises:
        ValueError: `xs` and `ys` differ in length, or `test_size` leaves
            either part empty.
        TypeError: `test_size` is neither an int nor a float.

    Examples:
        >>> xs_train, xs_test, ys_train, ys_test = train_test_split(
        ...     [[0.0], [1.0], [2.0], [3.0]], [0, 1, 0, 1], test_size=0.25, seed=0)
        >>> len(xs_train), len(xs_test)
        (3, 1)
    """

    xs, ys = list(xs), list(ys)
    n = len(xs)
    if len(ys) != n:
        raise ValueError(f"xs has {n} samples but ys has {len(ys)}")
    if isinstance(test_size, bool) or not isinstance(test_size, (int, float)):
        raise TypeError(f"test_size must be a fraction or a number of samples, not {test_size!r}")
    if isinstance(test_size, float):
        if not 0.0 < test_size < 1.0:
            raise ValueError(f"test_size as a fraction must be in (0, 1), not {test_size!r}")
        n_test = math.ceil(test_size * n)
    else:
        n_test = test_size
    if not 1 <= n_test < n:
        raise ValueError(f"test_size {test_size!r} leaves {n - n_test} of {n} samples to train "
                         f"on and {n_test} to test on: both need at least one")
    order = list(range(n))
    random.Random(seed).shuffle(order)
    test, train = order[:n_test], order[n_test:]
    return ([xs[i] for i in train], [xs[i] for i in test],
            [ys[i] for i in train], [ys[i] for i in test])
