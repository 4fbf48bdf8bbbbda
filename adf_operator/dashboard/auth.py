"""Who may look and who may act: the heartbeat's token, a signed session cookie, CSRF tokens.

- The JSON API takes ``Authorization: Bearer <token>`` (the heartbeat's token).
- The pages take a sign-in form: the token, once, sets a session cookie (signed with itsdangerous,
  HttpOnly, SameSite=Strict, Secure over HTTPS, 8 hours). The cookie holds only a random CSRF token
  and a signed-in flag, never the token itself.
- Every form carries the session's CSRF token; a POST without the matching one is refused. With
  SameSite=Strict this is defence in depth.
- Repeated wrong tokens from one address are braked with the heartbeat's FailureLimiter (429).
- The signing key is derived from the token unless one is given, so sessions survive a restart
  and work across replicas with no key of their own to manage, and rotating the token signs
  everyone out.
"""

from __future__ import annotations

import hmac
import secrets
from dataclasses import dataclass

from aiohttp import web
from itsdangerous import BadSignature, URLSafeTimedSerializer

from adf_operator.heartbeat.security import FailureLimiter, TokenSource

COOKIE = "adf_session"
MAX_AGE = 8 * 3600
CSRF_FIELD = "csrf_token"


@dataclass(frozen=True)
class Session:
    csrf: str
    signed_in: bool = False

    @classmethod
    def fresh(cls, signed_in: bool = False) -> Session:
        return cls(csrf=secrets.token_urlsafe(24), signed_in=signed_in)


class Rejected(Exception):
    """An authentication failure: HTTP status, stable code and a message for the person."""

    def __init__(self, status: int, code: str, message: str, retry_after: float | None = None):
        super().__init__(message)
        self.status, self.code, self.message, self.retry_after = status, code, message, retry_after


class Guard:
    """The token check (with its brake), and the session cookie's signing."""

    def __init__(
        self,
        token: TokenSource,
        *,
        read_only_open: bool = False,
        secret: bytes | None = None,
        limiter: FailureLimiter | None = None,
        max_age: int = MAX_AGE,
    ) -> None:
        self.token = token
        self.read_only_open = read_only_open
        self.limiter = limiter or FailureLimiter()
        self.max_age = max_age
        self._secret = secret

    def _signer(self) -> URLSafeTimedSerializer:
        key = self._secret or self.token.derive_key("adf-dashboard-session")
        return URLSafeTimedSerializer(key, salt="adf-dashboard-session")

    def check_token(self, request: web.Request, presented: str) -> None:
        """Raise Rejected (401, or 429 while the address is braked) unless the token matches."""
        address = request.remote or "unknown"
        wait = self.limiter.retry_after(address)
        if wait is not None:
            message = "too many wrong tokens from this address; try again later"
            raise Rejected(429, "too_many_requests", message, max(1.0, wait))
        if not presented or not self.token.matches(presented):
            self.limiter.record_failure(address)
            raise Rejected(401, "unauthorized", "the token is not valid")

    def check_bearer(self, request: web.Request) -> None:
        scheme, _, presented = request.headers.get("Authorization", "").partition(" ")
        if scheme.lower() != "bearer" or not presented.strip():
            raise Rejected(
                401, "unauthorized", "an Authorization: Bearer <token> header is required"
            )
        self.check_token(request, presented.strip())

    def load(self, request: web.Request) -> Session | None:
        """The request's session, or None when it has no valid (signed, unexpired) cookie."""
        raw = request.cookies.get(COOKIE)
        if not raw:
            return None
        try:
            data = self._signer().loads(raw, max_age=self.max_age)
        except BadSignature:  # also SignatureExpired
            return None
        if not isinstance(data, dict) or not isinstance(data.get("c"), str):
            return None
        return Session(csrf=data["c"], signed_in=data.get("u") is True)

    def store(self, request: web.Request, response: web.StreamResponse, session: Session) -> None:
        response.set_cookie(
            COOKIE,
            self._signer().dumps({"c": session.csrf, "u": session.signed_in}),
            max_age=self.max_age,
            path="/",
            httponly=True,
            samesite="Strict",
            secure=request.secure,
        )

    @staticmethod
    def forget(response: web.StreamResponse) -> None:
        response.del_cookie(COOKIE, path="/")

    @staticmethod
    def csrf_matches(session: Session | None, presented: object) -> bool:
        return (
            session is not None
            and isinstance(presented, str)
            and hmac.compare_digest(session.csrf.encode(), presented.encode())
        )
