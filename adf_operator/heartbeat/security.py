"""Who may ping: the bearer token, the CIDR allow-list, and a brake on repeated bad tokens."""

from __future__ import annotations

import hashlib
import hmac
import ipaddress
import logging
import os
import time
from collections import OrderedDict, deque
from collections.abc import Callable, Sequence
from pathlib import Path

log = logging.getLogger("adf.heartbeat")

IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network
IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address


class TokenSource:
    """The expected token, from a file or a fixed value (e.g. an environment variable).

    A file is read again whenever it changes (a mounted Secret is swapped in place on rotation). An
    unreadable or empty file matches nothing: the service fails closed rather than open.
    """

    def __init__(self, path: Path | None = None, value: str | None = None) -> None:
        if (path is None) == (value is None):
            raise ValueError("give exactly one of a token file or a token value")
        self._path = path
        self._stamp: tuple[int, int, int] | None = None
        self._token = b""
        if value is not None:
            self._token = value.strip().encode()
        else:
            self._refresh()
        if not self._token:
            where = f"the token file {path}" if path else "the token value"
            raise ValueError(f"{where} is empty or unreadable")

    def matches(self, presented: str) -> bool:
        """Constant-time comparison of a presented token with the current one."""
        self._refresh()
        candidate = presented.encode()
        return bool(self._token) and hmac.compare_digest(candidate, self._token)

    def derive_key(self, purpose: str) -> bytes:
        """A key for `purpose` derived from the current token: every replica and restart that has
        the token derives the same key, and rotating the token retires it."""
        self._refresh()
        return hmac.new(self._token, purpose.encode(), hashlib.sha256).digest()

    def _refresh(self) -> None:
        if self._path is None:
            return
        try:
            info = os.stat(self._path)
            stamp = (info.st_ino, info.st_mtime_ns, info.st_size)
            if stamp != self._stamp:
                self._token, self._stamp = self._path.read_bytes().strip(), stamp
        except OSError as exc:
            if self._token:
                log.error("token file %s cannot be read (%s): refusing all pings", self._path, exc)
            self._token, self._stamp = b"", None


class AddressPolicy:
    """The client address of a request, and whether the allow-list admits it.

    ``X-Forwarded-For`` is honoured only when configured, and then only its last entry — the one
    the trusted proxy in front of the service appended; earlier entries are the client's own claims.
    """

    def __init__(self, allow: Sequence[str] = (), trust_forwarded_for: bool = False) -> None:
        self.networks: list[IPNetwork] = [parse_cidr(text) for text in allow]
        self.trust_forwarded_for = trust_forwarded_for

    def client_address(self, peer: str | None, forwarded_for: str | None) -> str:
        """The address to judge; ValueError for a malformed trusted X-Forwarded-For."""
        if self.trust_forwarded_for and forwarded_for:
            last = forwarded_for.split(",")[-1].strip()
            return str(_address(last))
        return peer or "unknown"

    def allowed(self, address: str) -> bool:
        if not self.networks:
            return True
        try:
            ip = _address(address)
        except ValueError:
            return False
        return any(ip.version == net.version and ip in net for net in self.networks)


def parse_cidr(text: str) -> IPNetwork:
    """``10.0.0.0/8``, ``192.168.1.7`` or ``fd00::/8``; ValueError names the bad value."""
    try:
        return ipaddress.ip_network(text.strip(), strict=False)
    except ValueError:
        raise ValueError(f"--allow-cidr {text!r} is not an IP network such as 10.0.0.0/8") from None


def _address(text: str) -> IPAddress:
    try:
        ip = ipaddress.ip_address(text)
    except ValueError:
        raise ValueError(f"{text[:64]!r} is not an IP address") from None
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        return ip.ipv4_mapped  # a dual-stack socket reports IPv4 clients as ::ffff:a.b.c.d
    return ip


class FailureLimiter:
    """After ``limit`` failed authentications within ``window`` seconds, an address is refused
    (429) until the oldest failure ages out — before its token is even looked at, so a guesser
    learns nothing from the refused attempts. Memory is bounded to ``max_addresses``."""

    def __init__(
        self,
        limit: int = 10,
        window: float = 60.0,
        clock: Callable[[], float] = time.monotonic,
        max_addresses: int = 10_000,
    ) -> None:
        self.limit, self.window, self._clock = limit, window, clock
        self._max = max_addresses
        self._failures: OrderedDict[str, deque[float]] = OrderedDict()

    def retry_after(self, address: str) -> float | None:
        """Seconds until the address may try again, or None when it may try now."""
        failures = self._current(address)
        if failures is None or len(failures) < self.limit:
            return None
        return max(failures[0] + self.window - self._clock(), 0.0)

    def record_failure(self, address: str) -> None:
        failures = self._current(address)
        if failures is None:
            failures = self._failures[address] = deque(maxlen=self.limit)
            while len(self._failures) > self._max:
                self._failures.popitem(last=False)
        self._failures.move_to_end(address)
        failures.append(self._clock())

    def _current(self, address: str) -> deque[float] | None:
        failures = self._failures.get(address)
        if failures is None:
            return None
        horizon = self._clock() - self.window
        while failures and failures[0] <= horizon:
            failures.popleft()
        if not failures:
            del self._failures[address]
            return None
        return failures
