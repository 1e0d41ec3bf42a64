"""`almabench new-method NAME`: a package of its own for a new method, that works as written.

It holds a pyproject with the entry point that registers the method (almabench.extend.plugins finds it once the
package is installed), the method, a test that runs the contract check (almabench.extend.contract) and a README with
the commands that install it and benchmark it against app and dense. Two kinds of method (KINDS): one that prunes
(the smallest useful one: magnitude pruning to APP's schedule before each megabatch) and one that changes the
weights (shrink and perturb them before each megabatch, its noise from the cell's generator, its two numbers
settings a grid can sweep).
"""

from __future__ import annotations

import importlib.util
import os
import re
from pathlib import Path

from almabench.errors import AlmabenchError
from almabench.methods import METHODS

NAME = re.compile(r"[a-z][a-z0-9]*(-[a-z0-9]+)*")
MAX_NAME = 64  # characters: the package folder's name (almabench-NAME) stays far below 255 bytes

PYPROJECT = '''\
[build-system]
requires = ["setuptools>=68"]
build-backend = "setuptools.build_meta"

[project]
name = "almabench-{name}"
version = "0.1.0"
description = "{name}: a method for almabench"
requires-python = ">=3.11"
dependencies = ["almabench"]

# almabench finds the method here once the package is installed: `almabench list` shows it
[project.entry-points."almabench.methods"]
{name} = "{module}.method:{cls}"

[tool.setuptools]
packages = ["{module}"]
'''

METHOD = '''\
"""{name}: magnitude pruning to APP's schedule before each megabatch. Edit before_step to make it yours.

The harness (almabench) runs the stream, the training, the evaluation and the records; a method only decides
the masks, through the hooks of almabench.methods.Method: before_step (before each megabatch trains) and, if it
needs one, after_sgd_step (after every SGD step). Keep what it carries between megabatches in state_dict.
"""

from almabench.cell.config import RunConfig
from almabench.methods import Method, StepContext
from almabench.cell.sparsity import app_density


class {cls}(Method):
    name = "{name}"  # the entry point's name in pyproject.toml: what --methods and the results call it
    summary = "magnitude pruning to APP's schedule before each megabatch"
    prunes = True  # it reads the pruning settings (tau, scope); a method that never prunes says False
    shrinks = True  # its masks only shrink (tau >= 1 is then checked before a grid runs)

    def target_density(self, step: int, config: RunConfig) -> float:
        """The density it prunes to before megabatch `step`: recorded beside the measured one, and checked."""
        return app_density(step, config.megabatches, config.tau)

    def before_step(self, ctx: StepContext) -> None:
        """Keep the largest |w| among the surviving weights (masked weights stay at exactly zero)."""
        magnitude = {{name: w.detach().abs() for name, w in ctx.masks.params.items()}}
        ctx.prune(magnitude, self.target_density(ctx.step, ctx.config), within_current=True)
'''

PERTURB = '''\
"""{name}: before each megabatch after the first, every weight becomes shrink · w + noise · ε, ε ~ N(0, 1). Edit
before_step to make it yours.

The harness (almabench) runs the stream, the training, the evaluation and the records; a method that changes
weights works on ctx.model in before_step (before each megabatch trains). Draw every random number from
ctx.generator (seeded per cell): `almabench check-method` runs the method twice from other global random states
and fails it where the weights differ. Megabatch 1 is left as dense has it, so the two stay paired.
"""

import torch

from almabench.methods import Method, Setting, StepContext


class {cls}(Method):
    name = "{name}"  # the entry point's name in pyproject.toml: what --methods and the results call it
    summary = "before each megabatch, w <- shrink * w + noise * N(0, 1) from the cell's generator"
    # numbers a grid may vary: --set shrink=0.5, or a spec's [grid] shrink = [0.3, 0.6]; self.shrink holds the value
    settings = (Setting("shrink", 0.5, "the factor every weight is multiplied by", low=0.0, high=1.0),
                Setting("noise", 0.01, "the standard deviation of the Gaussian noise added", low=0.0))
    shrink: float
    noise: float

    def before_step(self, ctx: StepContext) -> None:
        if ctx.step == 1:
            return
        with torch.no_grad():
            for w in ctx.model.parameters():
                epsilon = torch.randn(w.shape, generator=ctx.generator).to(w.device, w.dtype)
                w.copy_(self.shrink * w + self.noise * epsilon)
        ctx.masks.apply()  # a pruned weight stays exactly zero
'''
KINDS = {"prune": METHOD, "perturb": PERTURB}  # new-method --kind

TEST = '''\
"""The contract that makes {name}'s numbers comparable with app's and dense's, on a tiny stream (seconds)."""

from almabench.extend.contract import check_method


def test_{module}_keeps_the_contract():
    report = check_method("{name}")
    assert report.ok, "\\n".join(report.lines())
'''

README = '''\
# almabench-{name}

A method for almabench, benchmarked beside APP, OSP, dense and the baselines on the same streams, seeds and
statistics.

```bash
pip install -e . && almabench check-method {name}           # install it; check its contract (a few seconds)
almabench run --methods {name},app,dense && almabench report results/   # benchmark it against app and dense
```

The method is in `{module}/method.py`; `pytest` runs `tests/test_contract.py`, the same contract check.
'''


def new_method(name: str, dest: Path, kind: str = "prune") -> Path:
    """Write the package for method `name` of `kind` (KINDS) into dest/almabench-NAME and return that folder;
    nothing is overwritten."""
    if not NAME.fullmatch(name) or len(name) > MAX_NAME:
        raise AlmabenchError(f"new-method: {name!r} is not a method name; use lowercase letters, digits and "
                             f"single hyphens, starting with a letter, at most {MAX_NAME} characters (e.g. my-method)")
    module = name.replace("-", "_")
    if importlib.util.find_spec(module) is not None:
        raise AlmabenchError(f"new-method: {name!r} would make a package {module} that hides the importable module "
                             f"{module} (its own imports would import itself); choose another name, e.g. "
                             f"my-{name}")
    if name in METHODS:
        raise AlmabenchError(f"new-method: {name!r} is taken by {METHODS.describe_origin(name)}; choose a name not "
                             f"in: {', '.join(METHODS.names())}")
    folder = dest / f"almabench-{name}"
    if os.path.lexists(folder):  # a dangling link too: writing through it would land wherever it points
        raise AlmabenchError(f"new-method: {folder} exists; choose another --dest or name (nothing was written)")
    cls = "".join(part.capitalize() for part in name.split("-"))
    files = {
        "pyproject.toml": PYPROJECT, f"{module}/__init__.py": '"""{name}: a method for almabench."""\n',
        f"{module}/method.py": KINDS[kind], "tests/test_contract.py": TEST, "README.md": README,
    }
    for relative, template in files.items():
        path = folder / relative
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(template.format(name=name, module=module, cls=cls))
    return folder
