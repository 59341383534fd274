"""Errors of the Colonies client, one type per way a call can end badly.

    ColoniesError
    ├── ColoniesUnreachable      no answer: connection refused/reset, timeouts (after retries)
    └── ColoniesHTTPError        the server answered with an error status
        ├── ColoniesServerError  5xx (retried first; may be transient)
        └── ColoniesRejected     4xx: the server refused this request; retrying will not help
            ├── BadRequest       400: malformed input; `message` is the server's text
            ├── Forbidden        403: bad signature, not a member, or the process is no longer ours
            ├── NotFound         404, or 500 "... is nil": no such object (404 from assign: nothing to do)
            └── AssignmentsPaused  408/503 from assign: the colony's assignments are paused on the server

Messages carry the server's own text, cut short; never keys or signatures.
"""

from __future__ import annotations

import ssl

_MAX_MESSAGE = 500
UNVERIFIED = ("the server's TLS certificate was not verified: trust the CA that signed it (a ColonyExecutor's "
              "spec.server.caSecretRef; SSL_CERT_FILE for `colonies-operator check`)")


class ColoniesError(Exception):
    """Base of every Colonies client error."""


class ColoniesUnreachable(ColoniesError):
    """`maybe_delivered`: the request went out and no answer came back (a reset, a read timeout),
    so the server may have done it. Only then is a non-idempotent call in doubt."""

    def __init__(self, url: str, attempts: int, elapsed: float, cause: BaseException | str, *,
                 maybe_delivered: bool = False) -> None:
        self.url, self.attempts, self.elapsed = url, attempts, elapsed
        self.maybe_delivered = maybe_delivered
        super().__init__(
            f"Colonies server at {url} is unreachable after {attempts} attempt(s) over {elapsed:.1f}s: "
            f"{cause if isinstance(cause, str) else type(cause).__name__ + ': ' + str(cause)}"
            + (f" ({UNVERIFIED})" if _unverified(cause) else "")
        )


def _unverified(cause: BaseException | str | None) -> bool:
    """Whether a TLS certificate verification failure is somewhere in the chain (httpx and
    aiohttp both wrap the ssl module's error)."""
    for _ in range(10):
        if not isinstance(cause, BaseException):
            return False
        if isinstance(cause, ssl.SSLCertVerificationError):
            return True
        cause = cause.__cause__ or cause.__context__
    return False


class ColoniesHTTPError(ColoniesError):
    def __init__(self, status: int, message: str, msgtype: str) -> None:
        self.status, self.message, self.msgtype = status, message[:_MAX_MESSAGE], msgtype
        super().__init__(f"{msgtype}: HTTP {status}: {self.message}")


class ColoniesServerError(ColoniesHTTPError):
    pass


class ColoniesRejected(ColoniesHTTPError):
    pass


class BadRequest(ColoniesRejected):
    pass


class Forbidden(ColoniesRejected):
    pass


class NotFound(ColoniesRejected):
    pass


class AssignmentsPaused(ColoniesRejected):
    """The colony owner paused assignments (`pauseassignmentsmsg`): a long poll waits it out
    and answers 408, a one-shot assign answers 503. Nothing is wrong with the executor; not
    retried, since only a resume helps."""


def error_for(status: int, message: str, msgtype: str) -> ColoniesHTTPError:
    """The typed error for an HTTP status the server answered with."""
    if status in (408, 503) and "assignments are paused" in message:
        return AssignmentsPaused(status, message, msgtype)
    if status == 500 and message.rstrip().endswith("is nil"):
        # v1.9.12 answers a lookup of an unknown executor or process with 500 "... is nil"
        return NotFound(status, message, msgtype)
    if status >= 500:
        return ColoniesServerError(status, message, msgtype)
    kind = {400: BadRequest, 403: Forbidden, 404: NotFound}.get(status, ColoniesRejected)
    return kind(status, message, msgtype)
