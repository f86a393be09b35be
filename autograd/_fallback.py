"""What autograd/engine.py does when the compiled core cannot be imported.

Three cases, told apart by the files beside the package:

- `_build_failure.txt` in the package: setup.py could not build the core (no
  compiler, no Cython) and installed the pure engine, writing why there.
  pip hides setup.py's own warning, so importing autograd warns, once.
- A `csrc/` folder beside the package: this is the source tree, imported
  because Python puts the current directory (or a script's) first on
  sys.path. Its core is not built (a plain `pip install .` builds it into the
  installed copy only), and running silently 100-1000x slower is worse than
  stopping: importing stops with an ImportError that says what to do.
- Otherwise an installed copy whose core does not load (removed, or built
  for another Python): it warns with the import error.

AUTOGRAD_PUREPYTHON=1 selects the pure engine before any of this.
"""
import os

FAILURE_RECORD = "_build_failure.txt"
"""The file setup.py writes into the package when the core could not be built."""

SLOWER = "about 100-1000x slower than the compiled core"


def source_tree_message(root: str) -> str:
    """The ImportError's text for a source tree without the compiled core.

    Args:
        root: The source tree's directory (the one holding autograd/ and csrc/).

    Returns:
        What happened and the three ways on.
    """
    return (f"autograd was imported from its source tree at {root}, where the compiled core is not "
            "built. Build it in place with `pip install -e .` (needs a C compiler), or run from "
            "another directory to use the installed copy. To run the pure-Python engine anyway "
            f"({SLOWER}), set AUTOGRAD_PUREPYTHON=1.")


def fallback_message(reason: str) -> str:
    """The warning's text for an installed copy running the pure engine.

    Args:
        reason: Why the core is missing: the build error setup.py recorded,
            or the error importing it.

    Returns:
        The reason, the cost and the fix.
    """
    reason = " ".join(reason.split())
    if len(reason) > 500:
        reason = reason[:497] + "..."
    return (f"autograd is running its pure-Python engine, {SLOWER}: the compiled core was not "
            f"built when this copy was installed ({reason}). To fix it, install a C compiler "
            "(gcc or clang) and the Python headers, then reinstall mini-autograd "
            "(pip install --force-reinstall --no-deps with the source you installed from). "
            "AUTOGRAD_PUREPYTHON=1 selects the pure engine without this warning.")


def import_error_message(error: ImportError) -> str:
    """The warning's text for an installed copy whose core does not import.

    Args:
        error: The error importing autograd.core.

    Returns:
        The error, the cost and the fix.
    """
    return (f"autograd is running its pure-Python engine, {SLOWER}: its compiled core could not be "
            f"imported ({error}). Reinstall mini-autograd with this Python (a C compiler "
            "builds the core), or set AUTOGRAD_PUREPYTHON=1 to select the pure engine without this "
            "warning.")


def on_missing_core(package_dir: str, error: ImportError) -> str:
    """Decide what importing autograd does when autograd.core fails to import.

    Args:
        package_dir: The directory of the autograd package being imported.
        error: The error importing autograd.core.

    Returns:
        The warning to give before the pure engine is used.

    Raises:
        ImportError: The package is the source tree, with no compiled core
            and no record of a failed build in it.
    """
    record = os.path.join(package_dir, FAILURE_RECORD)
    if os.path.isfile(record):
        with open(record, encoding="utf-8", errors="replace") as f:
            return fallback_message(f.read().strip() or "no reason was recorded")
    root = os.path.dirname(package_dir)
    if os.path.isdir(os.path.join(root, "csrc")):
        raise ImportError(source_tree_message(root), name="autograd") from error
    return import_error_message(error)
