"""The kopf handlers of the operator: `kopf run -m adf_operator.handlers` (or `python -m
adf_operator`). Importing this package registers them with kopf."""

from adf_operator.handlers import dataflow, dataflowrun, startup, sweep

__all__ = ["dataflow", "dataflowrun", "startup", "sweep"]
