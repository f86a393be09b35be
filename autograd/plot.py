"""Pictures of training (needs the optional matplotlib: the `plot` extra)."""
from autograd.engine import engine_of


def plot_training(plt, model, xs, ys, history, path, decision_boundary=True):
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
