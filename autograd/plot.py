"""Pictures of training (needs the optional matplotlib: the `plot` extra)."""
from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from autograd.engine import engine_of

if TYPE_CHECKING:
    from autograd.train import History


def plot_training(plt: Any, model: Any, xs: Sequence[Sequence[float]], ys: Sequence[float],
                  history: History, path: str, decision_boundary: bool = True) -> None:
    """Write the loss curve and, for 2-D inputs, the decision boundary to `path`."""
    panels = 2 if decision_boundary else 1
    fig, axes = plt.subplots(1, panels, figsize=(5 * panels, 4))
    axes = axes if panels > 1 else [axes]
    axes[0].plot(range(len(history.loss)), history.loss)
    axes[0].set_yscale("log")
    axes[0].set_xlabel("step")
    axes[0].set_ylabel("loss")
    axes[0].set_title("training loss")
    if decision_boundary:
        engine = engine_of(model.parameters()[0])
        lo0, hi0 = min(x[0] for x in xs) - 0.5, max(x[0] for x in xs) + 0.5
        lo1, hi1 = min(x[1] for x in xs) - 0.5, max(x[1] for x in xs) + 0.5
        n = 60
        g0 = [lo0 + (hi0 - lo0) * i / (n - 1) for i in range(n)]
        g1 = [lo1 + (hi1 - lo1) * j / (n - 1) for j in range(n)]
        with engine.no_grad():
            scores = [[1.0 if model([a, b]).data > 0 else 0.0 for a in g0] for b in g1]
        ax = axes[1]
        ax.contourf(g0, g1, scores, levels=[-0.5, 0.5, 1.5], cmap="Spectral", alpha=0.8)
        ax.scatter([x[0] for x in xs], [x[1] for x in xs], c=[y > 0 for y in ys],
                   s=30, cmap="Spectral", edgecolors="k")
        ax.set_title("decision boundary")
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


def confusion_matrix(true_ids: Sequence[int], predicted_ids: Sequence[int], k: int) -> list[list[int]]:
    """counts[i][j]: samples of class i predicted as class j."""
    counts = [[0] * k for _ in range(k)]
    for t, p in zip(true_ids, predicted_ids):
        counts[t][p] += 1
    return counts


def plot_classification(plt: Any, history: History, true_ids: Sequence[int],
                        predicted_ids: Sequence[int], k: int, path: str) -> None:
    """Write the training and validation loss curves and the confusion matrix
    of the held-out predictions to `path`."""
    fig, (curves, matrix) = plt.subplots(1, 2, figsize=(11, 4.5))
    curves.plot(range(len(history.loss)), history.loss, alpha=0.5, label="training (mini-batch)")
    if history.val_step:
        curves.plot(history.val_step, history.val_loss, "o-", label="held out")
    curves.set_yscale("log")
    curves.set_xlabel("step")
    curves.set_ylabel("cross-entropy")
    curves.set_title("loss")
    curves.legend()
    counts = confusion_matrix(true_ids, predicted_ids, k)
    matrix.imshow(counts, cmap="Blues")
    for i in range(k):
        for j in range(k):
            if counts[i][j]:
                matrix.text(j, i, counts[i][j], ha="center", va="center", fontsize=8,
                            color="white" if counts[i][j] > max(map(max, counts)) / 2 else "black")
    hits = sum(counts[i][i] for i in range(k))
    matrix.set_xticks(range(k))
    matrix.set_yticks(range(k))
    matrix.set_xlabel("predicted")
    matrix.set_ylabel("true")
    matrix.set_title(f"held-out confusion matrix ({hits} of {len(true_ids)} right)")
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


def plot_tanh_derivatives(plt: Any, path: str, order: int = 6, points: int = 241) -> None:
    """tanh and its first `order` derivatives on [-4, 4], each derivative
    the gradient of the one before (gradients with create_graph=True)."""
    from autograd.engine import Value
    from autograd.higher import gradients

    xs = [-4.0 + 8.0 * k / (points - 1) for k in range(points)]
    curves: list[list[float]] = [[] for _ in range(order + 1)]
    for x in xs:
        leaf = Value(x)
        d = leaf.tanh()
        curves[0].append(d.data)
        for k in range(1, order + 1):
            [d] = gradients(d, [leaf], create_graph=k < order)
            curves[k].append(d.data)
    columns = 4
    rows = (order + columns) // columns
    fig, axes = plt.subplots(rows, columns, figsize=(10, 2.3 * rows + 0.5), sharex=True, squeeze=False)
    for k, ax in enumerate(ax for row in axes for ax in row):
        if k > order:
            ax.axis("off")
            continue
        ax.plot(xs, curves[k], color=f"C{k}", linewidth=1.5)
        ax.axhline(0.0, color="gray", linewidth=0.5)
        ax.set_title("tanh(x)" if k == 0 else f"derivative {k}", fontsize=9)
        ax.tick_params(labelsize=7)
        ax.grid(alpha=0.3)
    fig.suptitle(f"tanh and its first {order} derivatives, each the gradient of the one before",
                 fontsize=10)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
