"""Build the compiled core (csrc/core.pyx -> autograd.core).

If the extension cannot be built (no compiler, no Cython), the package still
installs with the pure-Python engine, unless AUTOGRAD_REQUIRE_EXTENSION=1,
which makes a failed build an error.  AUTOGRAD_CYTHON_DEBUG=1 builds with
bounds checks and assertions on.
"""
import os
import sys

from setuptools import setup
from setuptools.command.build_ext import build_ext


def env_flag(name):
    return os.environ.get(name, "").strip().lower() in ("1", "true", "yes", "on")


REQUIRE = env_flag("AUTOGRAD_REQUIRE_EXTENSION")
DEBUG = env_flag("AUTOGRAD_CYTHON_DEBUG")


class OptionalBuildExt(build_ext):
    """build_ext that falls back to the pure engine when compiling fails."""

    def finalize_options(self):
        super().finalize_options()
        # Always compile: a release build must never pick up an object or a
        # library left in build/ by a debug build (or the other way round).
        self.force = True

    def run(self):
        try:
            super().run()
        except Exception as exc:  # no compiler, missing headers, ...
            self._give_up(exc)

    def build_extension(self, ext):
        try:
            super().build_extension(ext)
        except Exception as exc:
            self._give_up(exc)

    def _give_up(self, exc):
        if REQUIRE:
            raise
        print(f"WARNING: the compiled core could not be built ({exc}); "
              "installing the pure-Python engine only.", file=sys.stderr)


def extensions():
    try:
        from Cython.Build import cythonize
    except ImportError:
        if REQUIRE:
            raise
        print("WARNING: Cython is not available; installing the pure-Python engine only.",
              file=sys.stderr)
        return []
    from setuptools import Extension

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
