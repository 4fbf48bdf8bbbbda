"""What the operator's watches delivered: the latest DataFlows, and the runs of each flow.

kopf already watches every DataFlow; keeping the latest body of each spares a GET per launched
run and per settled run (an informer cache, as controller-runtime keeps one, in small). A cached
flow may lag the API server by a watch event: the Job of a run is built from it as from any
informer, and the conditional status writes that use its resourceVersion read the flow again
after a conflict.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable, Mapping
from typing import Any

Body = dict[str, Any]


class FlowCache:
    def __init__(self) -> None:
        self._flows: dict[tuple[str, str], Body] = {}

    def seen(self, body: Mapping[str, Any], deleted: bool = False) -> None:
        meta = body["metadata"]
        key = (meta["namespace"], meta["name"])
        if deleted:
            self._flows.pop(key, None)
        else:
            self._flows[key] = dict(body)

    def get(self, namespace: str, name: str) -> Body | None:
        """The latest flow the watch delivered; None before it delivered one (read the API)."""
        return self._flows.get((namespace, name))

    def __len__(self) -> int:
        return len(self._flows)


FLOWS = FlowCache()


RunRef = tuple[str, bool]  # a run's name, and whether it is active
FlowKey = tuple[str, str]  # namespace, flow name


class RunCache:
    """The runs of each flow, for the trigger's "is this slot's run there, is one active?",
    without listing them from the API server per trigger.

    The view is kopf's index of DataFlowRuns (handlers/dataflowrun.py), which kopf fills before
    it runs any handler, plus the runs this operator created in the last `memory` seconds: the
    index follows a watch and may not show yet a run created a moment ago, which a run-now
    request right after a slot must see (concurrencyPolicy).
    """

    def __init__(self, memory: float = 300.0, clock: Callable[[], float] = time.monotonic) -> None:
        self.index: Mapping[FlowKey, Iterable[RunRef]] | None = None
        self._memory = memory
        self._clock = clock
        self._created: dict[FlowKey, dict[str, float]] = {}

    def created(self, namespace: str, flow: str, name: str) -> None:
        self._created.setdefault((namespace, flow), {})[name] = self._clock()

    def of_flow(self, namespace: str, flow: str) -> list[RunRef]:
        """The flow's runs; a run created here and not yet indexed is active."""
        if self.index is None:
            raise RuntimeError("the DataFlowRun index is not attached (operator start-up)")
        key = (namespace, flow)
        indexed = dict(self.index.get(key, ()))  # one C-level copy: atomic under the GIL
        recent = self._created.get(key, {})
        cutoff = self._clock() - self._memory
        for name, at in list(recent.items()):
            if at < cutoff or name in indexed:
                del recent[name]
        if not recent:
            self._created.pop(key, None)
        return [*indexed.items(), *((name, True) for name in recent)]


RUNS = RunCache()
