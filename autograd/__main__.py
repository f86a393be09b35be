"""The command line: `autograd` or `python -m autograd`.

    autograd                      train micrograd's moons demo (the main job)
    autograd --example digits     classify handwritten digits (needs the data extra)
    autograd train --example lecture
    autograd graph --output docs/images/graph.png
    autograd derivatives --output docs/images/tanh_derivatives.png
    autograd --help

Ctrl-C during training stops it after the step under way: the summary so
far is printed and its picture drawn, and the exit status is 130.
"""
import argparse
import importlib
import os
import random
import sys
import time

from autograd import engine as default_engine


def _import_progress_bar():
    try:
        importlib.import_module("tqdm.auto")
    except ImportError:
        pass


def _lr_schedule(steps):
    """micrograd's demo schedule: 1.0 falling linearly to 0.1."""
    return lambda k: 1.0 - 0.9 * k / steps


DEFAULT_STEPS = {"moons": 100, "lecture": 100, "digits": 1000}


def _train_command(args):
    from autograd.data import lecture_example, make_moons
    from autograd.nn import MLP
    from autograd.train import train

    random.seed(args.seed)
    engine = args.engine or default_engine.BACKEND
    if args.steps is None:
        args.steps = DEFAULT_STEPS[args.example]
    if args.example == "digits":
        return _digits_command(args, engine)
    if args.example == "moons":
        xs, ys = make_moons(n_samples=100, noise=0.1, seed=args.seed)
        model = MLP(2, [16, 16, 1], engine=engine)
        settings = dict(loss="hinge", reg=1e-4, lr=_lr_schedule(args.steps))
        title = "moons: MLP(2, [16, 16, 1]), hinge loss + 1e-4 L2"
    else:
        xs, ys = lecture_example()
        model = MLP(3, [4, 4, 1], activation="tanh", engine=engine)
        settings = dict(loss="mse", lr=0.2)
        title = "lecture example: MLP(3, [4, 4, 1]) tanh, mean squared error"
    print(f"{title}; {len(xs)} samples, {args.steps} steps, engine {engine}")
    if not args.no_progress:
        _import_progress_bar()          # tens of ms, once: not training time
    start = time.perf_counter()
    history = train(model, xs, ys, steps=args.steps, progress=not args.no_progress,
                    seed=args.seed, **settings)
    elapsed = time.perf_counter() - start
    done = len(history.loss)
    if history.interrupted:
        print(f"interrupted after {done} of {args.steps} steps")
    if not done:
        return 130
    print(f"final loss {history.loss[-1]:.6f}, accuracy {history.accuracy[-1]:.0%} "
          f"({elapsed * 1e3 / done:.3f} ms per step, train()'s set-up included)")
    if args.example == "lecture":
        print("predictions:", ", ".join(f"{model(x).data:+.4f}" for x in xs), "targets:", ys)
    if args.plot != "none":
        _plot(model, xs, ys, history, args.plot, args.example)
    return 130 if history.interrupted else 0


def _digits_command(args, engine):
    """MLP(64, [32, 10]) on the handwritten digits: Adam on mini-batches of 32,
    softmax cross-entropy, evaluated on a held-out quarter as it trains."""
    from autograd.data import load_digits, train_test_split
    from autograd.nn import MLP
    from autograd.train import evaluate, predict, train

    try:
        xs, ys = load_digits()
    except ImportError as exc:
        print(exc, file=sys.stderr)
        return 1
    train_xs, test_xs, train_ys, test_ys = train_test_split(xs, ys, test_size=0.25, seed=args.seed)
    model = MLP(64, [32, 10], engine=engine)
    steps = args.steps
    print(f"digits: MLP(64, [32, 10]), softmax cross-entropy, Adam, batches of 32; "
          f"{len(train_xs)} samples to train on, {len(test_xs)} held out, {steps} steps, "
          f"engine {engine}")
    if not args.no_progress:
        _import_progress_bar()
    start = time.perf_counter()
    history = train(model, train_xs, train_ys, steps=steps, loss="cross_entropy", optimizer="adam",
                    lr=lambda k: 0.01 * (1.0 - 0.9 * k / steps), batch_size=32, seed=args.seed,
                    validation=(test_xs, test_ys), eval_every=max(1, steps // 10),
                    progress=not args.no_progress)
    elapsed = time.perf_counter() - start
    done = len(history.loss)
    if history.interrupted:
        print(f"interrupted after {done} of {steps} steps")
        if not done:
            return 130
        # the last validation was made before the last step: score the model as it is
        score = evaluate(model, test_xs, test_ys, loss="cross_entropy")
        accuracy, val_loss = score.accuracy or 0.0, score.loss
    else:
        # the validation after the last step is the final model's held-out score
        accuracy, val_loss = history.val_accuracy[-1] or 0.0, history.val_loss[-1]
    print(f"held-out accuracy {accuracy:.1%} (loss {val_loss:.4f}); "
          f"{elapsed:.1f} s of training, validation included")
    if args.plot != "none":
        plt = _pyplot()
        if plt is not None:
            from autograd.plot import plot_classification
            plot_classification(plt, history, test_ys, predict(model, test_xs), 10, args.plot)
            print(f"picture written to {args.plot}")
    return 130 if history.interrupted else 0


def _pyplot():
    try:
        import matplotlib
        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        print("no picture: install the plotting extra (pip install 'mini-autograd[plot]')")
        return None
    return plt


def _plot(model, xs, ys, history, path, example):
    plt = _pyplot()
    if plt is None:
        return
    from autograd.plot import plot_training
    plot_training(plt, model, xs, ys, history, path, decision_boundary=example == "moons")
    print(f"picture written to {path}")


def _graph_command(args):
    from autograd.graph import Graph, single_neuron_example

    engine = None
    if args.engine:
        import importlib
        engine = importlib.import_module("autograd.core" if args.engine == "cython" else "autograd.pure")
    out = single_neuron_example(engine)
    try:
        path = Graph(out, rankdir=args.rankdir).render(args.output)
    except RuntimeError as exc:         # Graphviz's dot missing, failing, or too slow
        print(f"autograd graph: {exc}", file=sys.stderr)
        return 1
    print(f"graph of a single ReLU neuron with two inputs written to {path}")
    return 0


def _derivatives_command(args):
    plt = _pyplot()
    if plt is None:
        return 1
    from autograd.plot import plot_tanh_derivatives
    plot_tanh_derivatives(plt, args.output, order=args.order)
    print(f"tanh and its first {args.order} derivatives written to {args.output}")
    return 0


# what each command can write: matplotlib's formats, Graphviz's three ("": the Graph's svg)
PICTURE_FORMATS = (".png", ".pdf", ".svg", ".svgz", ".jpg", ".jpeg", ".tif", ".tiff", ".webp",
                   ".eps", ".ps", ".pgf")
GRAPH_FORMATS = (".png", ".svg", ".pdf", "")


def _output_problem(path, formats):
    """Why `path` cannot be written as a picture (a sentence), or None: checked
    before any work, so a long training run does not end in a traceback."""
    if not os.path.basename(path):      # "" or a path ending in a separator
        return f"cannot write {path!r}: it names no file"
    if os.path.isdir(path):
        return f"cannot write {path!r}: it is a directory"
    ext = os.path.splitext(path)[1]
    if (ext.lower() if formats is PICTURE_FORMATS else ext) not in formats:    # (matplotlib: any case)
        known = ", ".join(f for f in formats if f)
        return f"cannot write {path!r}: its extension {ext or '(none)'!r} is not one of {known}"
    parent = os.path.dirname(os.path.abspath(path))
    if not os.path.isdir(parent):
        return f"cannot write {path!r}: the directory {parent!r} does not exist"
    if not os.access(path if os.path.exists(path) else parent, os.W_OK):
        return f"cannot write {path!r}: permission denied"
    return None


def _check_outputs(args):
    """Exit with argparse's status 2 and a message where an output path is unusable."""
    if args.command == "train" and args.plot != "none":
        problem = _output_problem(args.plot, PICTURE_FORMATS)
    elif args.command == "graph":
        problem = _output_problem(args.output, GRAPH_FORMATS)
    elif args.command == "derivatives":
        problem = _output_problem(args.output, PICTURE_FORMATS)
    else:
        problem = None
    if problem is not None:
        args.command_parser.error(problem)


def build_parser():
    parser = argparse.ArgumentParser(
        prog="autograd", description="Mini Autograd: micrograd's demos on a compiled scalar autograd engine.",
        formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="command")
    tr = sub.add_parser("train", help="train an example model (the default command)",
                        description="Train micrograd's moons demo, the lecture's four-sample "
                                    "example, or a classifier of handwritten digits.  Ctrl-C "
                                    "stops after the step under way, prints the summary so far, "
                                    "draws its picture and exits with status 130.")
    tr.add_argument("--example", choices=["moons", "lecture", "digits"], default="moons",
                    help="moons: MLP(2,[16,16,1]) on 100 moons with hinge loss (default); "
                         "lecture: MLP(3,[4,4,1]) on the four-sample set; digits: "
                         "MLP(64,[32,10]) on scikit-learn's 8x8 digits with cross-entropy, "
                         "tested on a held-out quarter (needs the data extra)")
    tr.add_argument("--steps", type=int, default=None,
                    help="training steps (default 100; 1000 for digits)")
    tr.add_argument("--seed", type=int, default=1337, help="seed for the data and the weights (default 1337)")
    tr.add_argument("--engine", choices=["cython", "python"], default=None,
                    help="engine to train with (default: the one autograd imported)")
    tr.add_argument("--plot", default="training.png", metavar="PATH",
                    help="where to write the picture of the loss and the decision boundary "
                         "(digits: the loss curves and the confusion matrix) "
                         "(default training.png; 'none' for no picture)")
    tr.add_argument("--no-progress", action="store_true", help="no progress bar")
    tr.set_defaults(func=_train_command, command_parser=tr)

    gr = sub.add_parser("graph", help="draw a single ReLU neuron's expression with Graphviz",
                        description="Draw the expression graph of a single ReLU neuron with two "
                                    "inputs (data and gradients after backward) with Graphviz.")
    gr.add_argument("--output", default="graph.png", metavar="PATH",
                    help="file to write: .png, .svg or .pdf (default graph.png)")
    gr.add_argument("--rankdir", choices=["LR", "TB"], default="LR", help="layout direction (default LR)")
    gr.add_argument("--engine", choices=["cython", "python"], default=None,
                    help="engine to build the expression with (default: the one autograd imported)")
    gr.set_defaults(func=_graph_command, command_parser=gr)

    de = sub.add_parser("derivatives", help="draw tanh and its first derivatives (needs the plot extra)",
                        description="Draw tanh and its first derivatives, each the gradient of the "
                                    "one before, built with gradients(create_graph=True).")
    de.add_argument("--output", default="tanh_derivatives.png", metavar="PATH",
                    help="file to write (default tanh_derivatives.png)")
    de.add_argument("--order", type=int, default=6, choices=range(1, 9), metavar="{1..8}",
                    help="how many derivatives (default 6)")
    de.set_defaults(func=_derivatives_command, command_parser=de)
    parser.epilog = _training_options(tr)
    return parser


def _training_options(tr):
    """The train command's options, for `autograd --help` (train is the
    default command: `autograd --steps 50` trains)."""
    formatter = tr._get_formatter()
    formatter.start_section("training options (autograd [train] [options])")
    formatter.add_arguments([a for a in tr._actions if not isinstance(a, argparse._HelpAction)])
    formatter.end_section()
    return formatter.format_help()


def main(argv=None):
    argv = list(sys.argv[1:] if argv is None else argv)
    if not argv or argv[0].startswith("-") and argv[0] not in ("-h", "--help"):
        argv.insert(0, "train")
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.command == "train" and args.steps is not None and args.steps < 1:
        args.command_parser.error("--steps must be at least 1")
    _check_outputs(args)
    try:
        return args.func(args)
    except KeyboardInterrupt:           # outside training (which stops gracefully)
        print("interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
