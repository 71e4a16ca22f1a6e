"""Build of the optional compiled book kernel (connectors/book/_l2fast.pyx).

Everything else about the package is in pyproject.toml. The extension is optional:
if Cython or a C compiler is missing, or the build fails, volcast installs without
it and ``connectors.book.l2`` uses its identical pure-Python book.
"""

import hashlib
from pathlib import Path

from setuptools import Extension, setup

PYX = "connectors/book/_l2fast.pyx"

try:
    from Cython.Build import cythonize
except ImportError:  # no Cython: pure Python only
    ext_modules = []
else:
    source_hash = hashlib.sha256((Path(__file__).parent / PYX).read_bytes()).hexdigest()
    ext_modules = cythonize(
        [
            Extension(
                "connectors.book._l2fast",
                [PYX],
                optional=True,
                define_macros=[("VOLCAST_L2_SOURCE_HASH", f'"{source_hash}"')],
            )
        ],
        compiler_directives={"language_level": "3"},
        quiet=True,
    )
    for ext in ext_modules:  # cythonize does not promise to carry these over
        ext.optional = True

setup(ext_modules=ext_modules)
