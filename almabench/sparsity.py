"""The path plugins have imported the pruning helpers from (`almabench new-method` wrote it); the code lives in
almabench.cell.sparsity (issue 39's layers). This name is that module itself, so that every plugin written against
it keeps working, attribute for attribute."""

import sys

from almabench.cell.sparsity import __name__ as _real

sys.modules[__name__] = sys.modules[_real]
