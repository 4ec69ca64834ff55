"""The one compiled part: basisnet_deploy/artifacts/_fastsynth.c, the fused synthesis kernel.

Everything else is in pyproject.toml. The extension is optional: where no C compiler is
available (or the build fails) pip still installs the package, and
basisnet_deploy.fast_synthesis runs its pure-NumPy fallback, which gives the same bytes.
"""

from setuptools import Extension, setup
from setuptools.command.build_ext import build_ext

# Bit-exactness needs each float op rounded on its own: no FMA contraction (-ffp-contract=off;
# GCC contracts by default), no fast-math reassociation. -O3 for the SIMD loops.
UNIX_FLAGS = ["-O3", "-ffp-contract=off", "-fno-fast-math", "-fno-finite-math-only"]
MSVC_FLAGS = ["/O2", "/fp:strict"]  # strict: MSVC contracts under /fp:precise in recent versions


class BuildExt(build_ext):
    def build_extensions(self):
        flags = MSVC_FLAGS if self.compiler.compiler_type == "msvc" else UNIX_FLAGS
        for ext in self.extensions:
            ext.extra_compile_args = flags + list(ext.extra_compile_args or [])
        super().build_extensions()


setup(
    ext_modules=[Extension("basisnet_deploy.artifacts._fastsynth", ["basisnet_deploy/artifacts/_fastsynth.c"],
                           optional=True)],
    cmdclass={"build_ext": BuildExt},
)
