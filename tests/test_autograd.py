"""The seed's test: set inputs xs and desired outputs ys, train, and watch
the loss fall and the predictions take the targets' signs."""
import random


from autograd.data import lecture_example, make_moons
from autograd.nn import MLP
from autograd.train import train


def test_lecture_example_learns_every_sign(engine):
    xs, ys = lecture_example()
    random.seed(0)
    model = MLP(3, [4, 4, 1], activation="tanh", engine=engine)
    history = train(model, xs, ys, steps=200, lr=0.2, loss="mse", progress=False)
    assert history.loss[-1] < 1e-3
    assert history.loss[-1] < history.loss[0]
    predictions = [model(x).data for x in xs]
    assert all((p > 0) == (y > 0) for p, y in zip(predictions, ys))


def test_moons_demo_reaches_full_accuracy(engine):
    random.seed(1337)
    xs, ys = make_moons(n_samples=100, noise=0.1, seed=1337)
    model = MLP(2, [16, 16, 1], engine=engine)
    history = train(model, xs, ys, steps=100, lr=lambda k: 1.0 - 0.9 * k / 100,
                    loss="hinge", reg=1e-4, progress=False)
    assert history.accuracy[-1] == 1.0
    assert len(history.loss) == len(history.accuracy) == 100
    scores = [model(x).data for x in xs]
    assert all((s > 0) == (y > 0) for s, y in zip(scores, ys))
