"""The engine in use: the compiled core, or the pure-Python reference.

`from autograd.engine import Value` works as `from micrograd.engine import
Value` does.  The compiled core (autograd.core) is used when it was built;
AUTOGRAD_PUREPYTHON=1 in the environment at import time selects the pure
reference (autograd.pure) instead.  Both can be imported directly to compare
them in one process.
"""
import os
from types import ModuleType
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:       # one API on both engines: type checkers read autograd/core.pyi
    from autograd.core import (Block, Replay, Value, dense, dot, enable_grad, function, is_grad_enabled,
                                   logsumexp, no_grad, vsum)
    BACKEND: str
    """Which engine is in use: "cython" (autograd.core) or "python" (autograd.pure)."""
elif os.environ.get("AUTOGRAD_PUREPYTHON", "").strip().lower() in ("1", "true", "yes", "on"):
    from autograd.pure import (Block, Replay, Value, dense, dot, enable_grad, function, is_grad_enabled,
                                   logsumexp, no_grad, vsum)
    BACKEND = "python"
else:
    try:
        from autograd.core import (Block, Replay, Value, dense, dot, enable_grad, function, is_grad_enabled,
                                   logsumexp, no_grad, vsum)
        BACKEND = "cython"
    except ImportError as _error:
        # installed without a compiler: warn, naming the cause, and run the
        # pure engine; imported from the source tree: stop (autograd/_fallback.py)
        from autograd._fallback import on_missing_core
        _message = on_missing_core(os.path.dirname(os.path.abspath(__file__)), _error)
        from autograd.pure import (Block, Replay, Value, dense, dot, enable_grad, function, is_grad_enabled,
                                   logsumexp, no_grad, vsum)
        BACKEND = "python"
        import warnings
        warnings.warn(_message, RuntimeWarning, stacklevel=2)



def engine_of(value: Any) -> ModuleType:
    """The engine module (autograd.core or autograd.pure) that made `value`.

    A subclass of an engine's Value (as the micrograd lecture writes) belongs
    to that engine: its classes are searched, in method resolution order,
    for the engine's Value.

    Args:
        value: A Value of either engine, or of a subclass of one.

    Returns:
        autograd.core or autograd.pure.

    Raises:
        TypeError: `value` is not a Value of either engine.
    """
    import sys
    for cls in type(value).__mro__:
        module = sys.modules.get(cls.__module__)
        if (cls.__module__ in ("autograd.core", "autograd.pure") and module is not None
                and getattr(module, "Value", None) is cls):
            return module
    raise TypeError(f"engine_of() takes a Value of autograd.core or autograd.pure, "
                    f"not {type(value).__module__}.{type(value).__qualname__}")


__all__ = ["Value", "Block", "Replay", "no_grad", "enable_grad", "is_grad_enabled", "vsum", "dot", "dense", "logsumexp", "function",
           "BACKEND", "engine_of"]
