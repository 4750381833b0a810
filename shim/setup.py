"""Builds the loopwatch package: the C++ extension loopwatch._shim (it includes the shared-memory
contract from ../protocol) and the loopwatch.pth activation hook, which must land at the top of
site-packages, so build_py copies it there. setuptools 66 (Debian 12) cannot declare ext-modules in
pyproject.toml alone, hence this file. Install offline with:
    python3 -m pip install --no-build-isolation --no-index ./shim
"""
import os
from glob import glob

from setuptools import Extension, setup
from setuptools.command.build_ext import build_ext
from setuptools.command.build_py import build_py

HERE = os.path.dirname(os.path.abspath(__file__))
PROTOCOL = os.path.normpath(os.path.join(HERE, "..", "protocol"))


class BuildPyWithPth(build_py):
    def run(self):
        super().run()
        self.copy_file(os.path.join(HERE, "loopwatch.pth"), os.path.join(self.build_lib, "loopwatch.pth"), preserve_mode=0)


class ParallelBuildExt(build_ext):
    """Compiles the extension's sources in parallel (one job per CPU) unless told otherwise (-j)."""

    def finalize_options(self):
        super().finalize_options()
        if not self.parallel:
            self.parallel = os.cpu_count() or 1


shim = Extension(
    "loopwatch._shim",
    sources=sorted(os.path.relpath(p, HERE) for p in glob(os.path.join(HERE, "src", "*.cpp"))),
    include_dirs=[os.path.join(HERE, "src"), PROTOCOL],
    depends=sorted(glob(os.path.join(HERE, "src", "*.h")) + glob(os.path.join(PROTOCOL, "loopwatch", "*.h"))),
    language="c++",
    # portable_symbols.h, in every source: glibc and libstdc++ symbol versions old enough for the
    # manylinux tag the wheel claims (shim/README.md, "Wheels").
    extra_compile_args=["-std=c++20", "-O2", "-fvisibility=hidden", "-Wall", "-Wextra", "-Wno-missing-field-initializers",
                        "-include", os.path.join(HERE, "src", "portable_symbols.h")],
)

setup(ext_modules=[shim], cmdclass={"build_py": BuildPyWithPth, "build_ext": ParallelBuildExt})
