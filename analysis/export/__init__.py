"""`almabench export`: result files -> the formats the field's tools read (parquet, TensorBoard, W&B, MLflow).

One module per format, each an optional extra; the registry below says which module writes a format, which
package it needs and how to look at what it wrote. Formats that can also follow a running grid
(`almabench run --log`) name a class as `LIVE_RUN` (a runs.CellRun): one cell's run, fed step by step, the
same class the export feeds from the finished files, so a live log and an export look alike.
"""

from __future__ import annotations

import importlib
import importlib.util
from dataclasses import dataclass
from types import ModuleType

from almabench.errors import AlmabenchError
from almabench.registry import Registry


@dataclass(frozen=True)
class Writer:
    """A format: its module in this package (a plugin's: its full dotted name), the package it imports, the extra
    that installs it, the folder it writes under RESULTS by default, how to view it ({dest}: where it went),
    whether it logs live, and the other packages of its extra it imports (mlflow-skinny's sqlite store needs
    SQLAlchemy and alembic)."""

    module: str
    requires: str
    extra: str
    view: str
    live: bool = False
    also: tuple[str, ...] = ()

    def load(self, name: str, flag: str = "--to") -> ModuleType:
        """The writer's module; a missing package is one line naming the extra to install."""
        for package in (self.requires, *self.also):
            if importlib.util.find_spec(package) is None:
                raise AlmabenchError(f"{flag} {name} needs the {package} package: "
                                     f"pip install 'almabench[{self.extra}]'")
        builtin = WRITERS.origin(name) is None  # a plugin's writer names its module in full
        return importlib.import_module(f"{__name__}.{self.module}" if builtin else self.module)


WRITERS: Registry[Writer] = Registry("export format", "almabench.exporters",
                                     lambda entry: None if isinstance(entry, Writer) else "an almabench Writer")
WRITERS.register("parquet")(Writer("parquet", "pyarrow", "parquet",
                                   "python -c \"import pandas; print(pandas.read_parquet('{dest}/steps.parquet'))\""))
WRITERS.register("tensorboard")(Writer("tensorboard", "tensorboard", "tensorboard", "tensorboard --logdir {dest}",
                                       live=True))
WRITERS.register("wandb")(Writer("wandb", "wandb", "wandb", "wandb sync {dest}/wandb/offline-run-*",
                                 live=True))
WRITERS.register("mlflow")(Writer("mlflow", "mlflow", "mlflow",
                                  "mlflow ui --backend-store-uri sqlite:///{dest}/mlflow.db  (needs the full mlflow)",
                                  also=("sqlalchemy", "alembic")))
