"""Exceptions of the shmex bindings, with Academy's names where Academy has one.

Every failure of libshmex is a :class:`ShmexError` (or a built-in
:class:`TimeoutError`); an error that an agent answered with is a
:class:`RemoteError`, whose ``kind`` is the agent's error kind (Academy's
exception names). When the kind names a Python built-in exception
(``ValueError``, ``KeyError``...), the error raised is also an instance of
that built-in, so ``except ValueError`` works across languages.
"""

from __future__ import annotations

import builtins

from . import _lib as L


class ShmexError(Exception):
    """A failure reported by libshmex; ``status`` is its status code."""

    def __init__(self, message: str, status: int = L.EIO):
        super().__init__(message)
        self.status = status


class BadEntityIdError(ShmexError):
    """No mailbox for this entity id (Academy's BadEntityIdError)."""


class MailboxClosedError(ShmexError):
    """The mailbox is terminated (Academy's MailboxClosedError)."""


class HandleClosedError(ShmexError):
    """The handle, client, agent or exchange is closed (Academy's HandleClosedError)."""


class BadHandleError(HandleClosedError):
    """libshmex did not know the handle: closed (or never made)."""


class ProxyError(ShmexError):
    """A bad, stale, foreign or expired proxy, or its owner died."""


class StoreFullError(ShmexError):
    """The arena, /dev/shm or the registry is full."""


class MessageTooLargeError(ShmexError):
    """A message larger than a mailbox takes: pass the payload by loan."""


class CancelledError(ShmexError):
    """The future was cancelled."""


class AgentShutdownError(ShmexError):
    """The agent was asked to shut down (raised inside a receive loop)."""


class RemoteError(ShmexError):
    """An error an agent answered with: ``kind`` (Academy's exception names,
    or whatever the agent chose) and the agent's message."""

    def __init__(self, kind: str, message: str, status: int = L.EREMOTE):
        super().__init__(f"{kind}: {message}" if message else kind, status)
        self.kind = kind
        self.remote_message = message


class AgentTerminatedError(RemoteError):
    """The agent was terminated, or its process died, with the call in flight."""


_STATUS = {
    L.EINVAL: ValueError,
    L.EBADHANDLE: BadHandleError,
    L.ECLOSED: HandleClosedError,
    L.EBADID: BadEntityIdError,
    L.EMAILBOX_CLOSED: MailboxClosedError,
    L.ECANCELED: CancelledError,
    L.ESHUTDOWN: AgentShutdownError,
    L.ETOOLARGE: MessageTooLargeError,
    L.ENOSPACE: StoreFullError,
    L.EPROXY: ProxyError,
    L.EEXIST: ShmexError,
    L.EIO: ShmexError,
    L.EBUSY: ShmexError,
    L.ETRUNCATED: ShmexError,
}

_remote_types: dict[str, type] = {}


def remote_error(kind: str, message: str, status: int = L.EREMOTE) -> RemoteError:
    """The RemoteError for kind, also an instance of the built-in exception
    of that name when there is one."""
    base = AgentTerminatedError if status == L.EAGENT_TERMINATED else RemoteError
    builtin = getattr(builtins, kind, None)
    if isinstance(builtin, type) and issubclass(builtin, Exception) and not issubclass(builtin, ShmexError):
        key = f"{base.__name__}:{kind}"
        t = _remote_types.get(key)
        if t is None:
            try:
                t = type(kind, (base, builtin), {"__module__": "shmex.errors"})
            except TypeError:  # a built-in that cannot be a base with ours
                t = base
            _remote_types[key] = t
        err = t.__new__(t)
        base.__init__(err, kind, message, status)
        return err
    return base(kind, message, status)


def error(status: int) -> Exception:
    """The exception for a failed call's status, with the thread's last error."""
    lib = L.lib()
    msg = lib.shmex_last_error().decode("utf-8", "replace")
    if status in (L.EREMOTE, L.EAGENT_TERMINATED):
        kind = lib.shmex_last_error_kind().decode("utf-8", "replace")
        prefix = f"{kind}: "
        # The library's message reads "exchange: remote KIND: MESSAGE"; keep MESSAGE.
        i = msg.find(prefix)
        return remote_error(kind, msg[i + len(prefix):] if i >= 0 else msg, status)
    if status in (L.ETIMEDOUT, L.EPENDING):
        return TimeoutError(msg)
    t = _STATUS.get(status, ShmexError)
    if issubclass(t, ShmexError):
        return t(msg, status)
    return t(msg)


def check(status: int) -> int:
    """Raise the exception of a negative status; return the status otherwise."""
    if status < 0:
        raise error(status)
    return status
