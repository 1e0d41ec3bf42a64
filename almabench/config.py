"""The path plugins have imported RunConfig from since almabench's first release (the README's Python API); the code
lives in almabench.cell.config (issue 39's layers). This name is that module itself, so that every plugin written
against it keeps working, attribute for attribute."""

import sys

from almabench.cell.config import __name__ as _real

sys.modules[__name__] = sys.modules[_real]
