"""The latest DataFlows the operator's watch delivered, by namespace and name.

kopf already watches every DataFlow; keeping the latest body of each spares a GET per launched
run and per settled run (an informer cache, as controller-runtime keeps one, in small). A cached
flow may lag the API server by a watch event: the Job of a run is built from it as from any
informer, and the conditional status writes that use its resourceVersion read the flow again
after a conflict.
"""

from __future__ import annotations

from collections.abc import Mapping
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
