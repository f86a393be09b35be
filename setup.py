"""Build the compiled core (csrc/core.pyx -> autograd.core).

If the extension cannot be built (no compiler, no Cython), the package still
installs with the pure-Python engine, unless AUTOGRAD_REQUIRE_EXTENSION=1,
which makes a failed build an error.  The reason is then written into the
package (autograd/_build_failure.txt), and importing autograd warns with it:
pip hides this script's output.  AUTOGRAD_CYTHON_DEBUG=1 builds with bounds
checks and assertions on.
"""
import os
import re
import sys

from setuptools import setup
from setuptools.command.build_ext import build_ext


def env_flag(name):
    return os.environ.get(name, "").strip().lower() in ("1", "true", "yes", "on")


REQUIRE = env_flag("AUTOGRAD_REQUIRE_EXTENSION")
DEBUG = env_flag("AUTOGRAD_CYTHON_DEBUG")
FAILURE_RECORD = "_build_failure.txt"   # the name autograd/engine.py looks for
NO_CYTHON = None                        # why Cython cannot build the core, if it cannot


class OptionalBuildExt(build_ext):
    """build_ext that falls back to the pure engine when compiling fails.

    It writes why into the package, beside where the core would be (the
    build directory, or the source tree for an in-place or editable build),
    and removes that record after a build that succeeds.
    """

    def finalize_options(self):
        super().finalize_options()
        # Always compile: a release build must never pick up an object or a
        # library left in build/ by a debug build (or the other way round).
        self.force = True

    def run(self):
        self.failure = NO_CYTHON
        if self.failure is None:
            try:
                super().run()
            except Exception as exc:  # no compiler, missing headers, ...
                self._give_up(exc)
        else:
            print(f"WARNING: {self.failure}; installing the pure-Python engine only.", file=sys.stderr)
        self._write_record()

    def build_extension(self, ext):
        try:
            super().build_extension(ext)
        except Exception as exc:
            self._give_up(exc)

    def _give_up(self, exc):
        if REQUIRE:
            raise
        if self.failure is None:    # the first error is the cause; later ones follow from it
            self.failure = summary(exc)
        print(f"WARNING: the compiled core could not be built ({exc}); "
              "installing the pure-Python engine only.", file=sys.stderr)

    def _write_record(self):
        package = os.path.dirname(self.get_ext_fullpath("autograd.core"))
        record = os.path.join(package, FAILURE_RECORD)
        if self.failure is None:
            if os.path.exists(record):
                os.remove(record)
            return
        os.makedirs(package, exist_ok=True)
        with open(record, "w", encoding="utf-8") as f:
            f.write(self.failure + "\n")


def summary(exc):
    """One line for the record: the error, with a compiler's command line
    ("Command '['gcc', '-O3', ...]' returned ...") cut to its program."""
    text = " ".join(f"{type(exc).__name__}: {exc}".split())
    text = re.sub(r"Command '\['([^']*)'[^\]]*\]'", r"command '\1'", text)
    return text.rstrip(".")


def extensions():
    global NO_CYTHON
    from setuptools import Extension

    try:
        from Cython.Build import cythonize
    except ImportError:
        if REQUIRE:
            raise
        # the extension stays listed, so that build_ext runs and records why
        # it is not built
        NO_CYTHON = "Cython is not available to translate csrc/core.pyx to C"
        return [Extension("autograd.core", ["csrc/core.pyx"])]

    # -ffp-contract=off: no fused multiply-add, so results are bitwise equal
    # to the pure-Python engine's.
    cflags = ["-O3", "-ffp-contract=off"] if os.name != "nt" else ["/fp:precise"]
    directives = {"language_level": 3}
    macros = []
    if DEBUG:
        cflags = ["-O0", "-g", "-ffp-contract=off"]
        directives.update(boundscheck=True, wraparound=True, initializedcheck=True)
        macros.append(("AUTOGRAD_DEBUG", "1"))
    else:
        macros.append(("NDEBUG", "1"))
    ext = Extension("autograd.core", ["csrc/core.pyx"], include_dirs=["csrc"],
                    extra_compile_args=cflags, define_macros=macros)
    return cythonize([ext], compiler_directives=directives,
                     build_dir="build/cython-debug" if DEBUG else "build/cython")


setup(ext_modules=extensions(), cmdclass={"build_ext": OptionalBuildExt})
