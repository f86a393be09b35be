"""Shared test helpers."""
import contextlib
import gc
import math
import os
import signal


def examples(n):
    """Hypothesis examples for a property test: n, or a tenth of it (at least
    10) with AUTOGRAD_QUICK_PROPERTIES=1, as under valgrind."""
    if os.environ.get("AUTOGRAD_QUICK_PROPERTIES") == "1":
        return max(10, n // 10)
    return n


def same_float(x, y):
    """Bitwise-equal floats (NaN equal to NaN, 0.0 distinct from -0.0)."""
    if math.isnan(x) and math.isnan(y):
        return True
    return x == y and math.copysign(1.0, x) == math.copysign(1.0, y)


def left_to_right(numbers):
    """numbers[0] + numbers[1] + ..., in that order, as the engines add (and
    not sum(), whose float sums are compensated since Python 3.12)."""
    total = numbers[0]
    for x in numbers[1:]:
        total = total + x
    return total


def close(x, y, rel=1e-12):
    """Equal within `rel` relative error (NaNs and infinities must match)."""
    if math.isnan(x) or math.isnan(y):
        return math.isnan(x) and math.isnan(y)
    if math.isinf(x) or math.isinf(y):
        return x == y
    return abs(x - y) <= rel * max(abs(x), abs(y)) or abs(x - y) <= 1e-300


def central_difference(f, xs, i, h=1e-6):
    """d f(xs) / d xs[i] by central differences, the step relative to xs[i]."""
    step = h * max(1.0, abs(xs[i]))
    up = list(xs)
    down = list(xs)
    up[i] += step
    down[i] -= step
    return (f(up) - f(down)) / (2 * step)


def is_core(engine):
    """True for the compiled core's module, False for the pure engine's."""
    return engine.__name__ == "autograd.core"


def check_arena(engine):
    """Verify the compiled core's arena invariants (nothing to check on the pure engine)."""
    if is_core(engine):
        engine.check_arena()


@contextlib.contextmanager
def collecting_at_every_allocation(callback):
    """Run `callback` as a gc callback, with the cyclic GC collecting at every
    allocation, inside the block: the code under test then runs Python code
    at each of its GC points."""
    threshold = gc.get_threshold()
    gc.callbacks.append(callback)
    gc.set_threshold(1)
    try:
        yield
    finally:
        gc.set_threshold(*threshold)
        gc.callbacks.remove(callback)


@contextlib.contextmanager
def compacting_at_the_first_collection(core, garbage):
    """Inside the block, the first collection drops the nodes in `garbage`
    (made before the nodes under test) and compacts the arena, so the nodes
    under test move at a GC point of the code under test; with the GC
    collecting at every allocation.  Yields a list that is non-empty once
    that has happened."""
    fired = []

    def callback(phase, info):
        if phase == "start" and not fired:
            fired.append(1)
            garbage.clear()
            core.collect()

    gc.collect()
    with collecting_at_every_allocation(callback):
        yield fired


def stop_timer_signal(old_handler):
    """Stop the SIGALRM timer and put back the handler that was there.  A
    signal already on its way (valgrind queues them) must not meet the
    default action, which ends the process: SIG_DFL comes back as SIG_IGN."""
    signal.setitimer(signal.ITIMER_REAL, 0, 0)
    default = old_handler in (signal.SIG_DFL, None)
    signal.signal(signal.SIGALRM, signal.SIG_IGN if default else old_handler)


@contextlib.contextmanager
def python_handles_sigint():
    """SIGINT raises KeyboardInterrupt meanwhile, whatever this process was
    started with (a shell starts background jobs with SIGINT ignored: then a
    test's Ctrl-C would be nothing and a loop waiting for it would run on)."""
    previous = signal.signal(signal.SIGINT, signal.default_int_handler)
    try:
        yield
    finally:
        signal.signal(signal.SIGINT, previous)
