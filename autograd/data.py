"""Small example data sets, with no dependencies."""
import math
import random

# The lecture's four samples: inputs and desired outputs.
LECTURE_XS = [[2.0, 3.0, -1.0], [3.0, -1.0, 0.5], [0.5, 1.0, 1.0], [1.0, 1.0, -1.0]]
LECTURE_YS = [1.0, -1.0, -1.0, 1.0]


def lecture_example():
    """(xs, ys): the four-sample set from micrograd's lecture."""
    return [list(x) for x in LECTURE_XS], list(LECTURE_YS)


def make_moons(n_samples=100, noise=0.1, seed=None):
    """Two interleaving half circles, as scikit-learn's make_moons builds them.

    Returns (X, y): X a list of [x0, x1] rows, y a list of labels -1 or +1,
    shuffled; Gaussian noise of standard deviation `noise` is added.
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
