"""shmex for Python: agents, handles and zero-copy payloads over libshmex.

A Python process joins a shmex exchange on its node and calls agents written
in Go, C, Fortran or Python, serves agents of its own, and passes arrays
between processes without a copy (see :mod:`shmex.payload`). Names follow
Academy's where Academy has one (``Exchange.register_agent``,
``Exchange.discover``, ``Exchange.get_handle``, ``Handle.action``,
``Behavior``, ``action``, ``loop``, ``Agent``, ``BadEntityIdError``...).

Needs only the standard library and ``msgpack`` (numpy is optional), and
libshmex (see :func:`load`). Importing it loads no library: the first
:class:`Exchange` does.

Loading libshmex starts a Go runtime in the process: do not ``fork`` without
``exec`` afterwards (use multiprocessing's "spawn" or "forkserver" start
methods), and see the project's docs/embedding.md about signals.
"""

from ._lib import FOREVER, LibraryNotFound, load
from .agent import Agent, AgentRunConfig, Behavior, action, loop
from .errors import (
    AgentShutdownError,
    AgentTerminatedError,
    BadEntityIdError,
    BadHandleError,
    CancelledError,
    HandleClosedError,
    MailboxClosedError,
    MessageTooLargeError,
    ProxyError,
    RemoteError,
    ShmexError,
    StoreFullError,
)
from .exchange import AgentId, ClientId, EntityId, Exchange, Future, Handle, MailboxStatus
from .payload import LEASED, OWNED, PROXY_EXT, SINGLE_USE, Loan, Payload, Proxy

__version__ = "0.2.0"


def version() -> str:
    """The version of the loaded libshmex ("0.2.0 (go1.26.x)")."""
    from ._lib import lib

    return lib().shmex_version_string().decode()


__all__ = [
    "Agent",
    "AgentId",
    "AgentRunConfig",
    "AgentShutdownError",
    "AgentTerminatedError",
    "BadEntityIdError",
    "BadHandleError",
    "Behavior",
    "CancelledError",
    "ClientId",
    "EntityId",
    "Exchange",
    "FOREVER",
    "Future",
    "Handle",
    "HandleClosedError",
    "LEASED",
    "LibraryNotFound",
    "Loan",
    "MailboxClosedError",
    "MailboxStatus",
    "MessageTooLargeError",
    "OWNED",
    "PROXY_EXT",
    "Payload",
    "Proxy",
    "ProxyError",
    "RemoteError",
    "SINGLE_USE",
    "ShmexError",
    "StoreFullError",
    "action",
    "load",
    "loop",
    "version",
]
