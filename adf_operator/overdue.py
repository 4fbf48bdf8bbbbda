"""Which objects are overdue for a retry: the operator's one periodic sweep instead of a kopf
timer per object.

A kopf timer puts a finalizer on every object it runs for (two more patches per object, and
objects that cannot be deleted while the operator is away). The event handlers note here what
waits for the operator (a DataFlow with a pending trigger, an active DataFlowRun) and since when;
the sweep retries what has waited for longer than its interval and starts the clock again.
"""

from __future__ import annotations

Key = tuple[str, str]  # namespace, name


class Overdue:
    """Objects waiting since a time (any monotonic clock), due once `interval` has passed."""

    def __init__(self, interval: float) -> None:
        self.interval = interval
        self._since: dict[Key, float] = {}

    def note(self, key: Key, waiting: bool, now: float) -> None:
        """Record an object's latest state: a waiting object keeps the time it was first seen
        waiting, one that no longer waits is forgotten."""
        if waiting:
            self._since.setdefault(key, now)
        else:
            self._since.pop(key, None)

    def take_due(self, now: float) -> list[Key]:
        """The objects due for a retry, oldest first; their clocks restart at `now`."""
        due = sorted(
            (since, key) for key, since in self._since.items() if now - since >= self.interval
        )
        for _, key in due:
            self._since[key] = now
        return [key for _, key in due]

    def __len__(self) -> int:
        return len(self._since)
