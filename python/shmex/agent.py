"""Agents written in Python, served over shmex (Academy's Behavior, action,
loop and Agent).

A behavior is a class whose methods marked with :func:`action` are callable
by peers in any language, whose methods marked with :func:`loop` run in
threads until shutdown, with ``on_setup`` and ``on_shutdown`` hooks::

    class Counter(shmex.Behavior):
        def __init__(self):
            self.count = 0

        @shmex.action
        def increment(self, by=1):
            self.count += by
            return self.count

    with shmex.Exchange("lab") as ex:
        shmex.Agent(Counter(), exchange=ex).run()   # until a shutdown request

Arguments arrive decoded from MessagePack (see
:meth:`shmex.Exchange.pack_args`): an action with one parameter gets the
value sent; one with several gets an array spread over them (or a map as
keyword arguments). A proxy in the arguments arrives as a
:class:`shmex.Payload`, read in place in the sender's arena. A result is
encoded the same way; return a :class:`shmex.Loan` to lend a large result.
An exception raised by an action reaches the caller as an error of kind the
exception's class name (``ValueError``...).
"""

from __future__ import annotations

import ctypes
import dataclasses
import inspect
import logging
import threading
from concurrent.futures import ThreadPoolExecutor
from ctypes import byref, c_void_p

from . import _lib as L
from .errors import check, error
from .exchange import AgentId, EntityId, Exchange, _cstrs, behavior_names

__all__ = ["Agent", "AgentRunConfig", "Behavior", "action", "loop"]

log = logging.getLogger(__name__)


def action(method):
    """Mark a method of a Behavior as an action peers may call."""
    method._shmex_action = True
    return method


def loop(method):
    """Mark a method of a Behavior as a control loop: it runs in a thread of
    its own from the end of setup, with a ``threading.Event`` set at
    shutdown, and should return soon after. A loop that raises shuts the
    agent down."""
    method._shmex_loop = True
    return method


class Behavior:
    """Base class of agent behaviors. Its name (the class name) and the names
    of its Behavior base classes are what :meth:`shmex.Exchange.discover`
    finds."""

    def on_setup(self) -> None:
        """Called before the agent serves requests or starts its loops."""

    def on_shutdown(self) -> None:
        """Called last, after the actions ended and the loops stopped."""

    @classmethod
    def behavior_actions(cls) -> dict[str, str]:
        """The names of the actions (name -> method name)."""
        return {n: n for n, m in inspect.getmembers(cls) if getattr(m, "_shmex_action", False)}

    @classmethod
    def behavior_loops(cls) -> list[str]:
        """The names of the control loops."""
        return [n for n, m in inspect.getmembers(cls) if getattr(m, "_shmex_loop", False)]


@dataclasses.dataclass(frozen=True)
class AgentRunConfig:
    """How an agent runs (Academy's AgentRunConfig).

    ``max_action_concurrency``: None (the default) runs each action in the
    thread that receives it, one at a time, which is fastest; n > 1 runs up to
    n actions at once in a thread pool (pings and shutdowns keep flowing
    while they run). Academy's None means an unbounded pool instead.
    """

    max_action_concurrency: int | None = None


class _BadArguments(Exception):
    pass


class _Spec:
    """How to spread a decoded argument over a method's parameters."""

    __slots__ = ("fn", "nmax", "nreq", "varargs", "kwargs")

    def __init__(self, fn):
        self.fn = fn
        sig = inspect.signature(fn)
        pos = [p for p in sig.parameters.values() if p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD)]
        self.nmax = len(pos)
        self.nreq = sum(p.default is p.empty for p in pos)
        self.varargs = any(p.kind == p.VAR_POSITIONAL for p in sig.parameters.values())
        self.kwargs = any(p.kind == p.VAR_KEYWORD for p in sig.parameters.values())

    def call(self, value):
        fn = self.fn
        if self.nmax == 0 and not self.varargs:
            if value is None:
                return fn()
            if isinstance(value, dict) and self.kwargs:
                return fn(**value)
            raise _BadArguments(f"{fn.__name__} takes no arguments")
        if self.nmax == 1 and not self.varargs:
            if value is None and self.nreq == 0:
                return fn()
            return fn(value)
        if value is None and self.nreq == 0:
            return fn()
        if isinstance(value, list):
            return fn(*value)
        if isinstance(value, dict):
            return fn(**value)
        if self.nreq <= 1:
            return fn(value)
        raise _BadArguments(f"{fn.__name__} takes {self.nreq} or more arguments: send an array")


class Agent:
    """Runs a behavior as an agent of ``exchange`` in this process (Academy's
    Agent): registers it (or, with ``agent_id``, takes over the mailbox of an
    agent registered elsewhere), serves its actions from a listener thread,
    answers pings, runs its loops, and stops at a shutdown request,
    :meth:`signal_shutdown`, or a loop error. If this process dies, the
    mailbox reads as terminated and calls in flight to it fail within about
    a second.
    """

    def __init__(self, behavior: Behavior, *, exchange: Exchange, agent_id: AgentId | None = None,
                 name: str | None = None, config: AgentRunConfig | None = None):
        self.behavior = behavior
        self.exchange = exchange
        self.config = config or AgentRunConfig()
        bname, impl = behavior_names(behavior)
        arr, n = _cstrs(impl)
        self._a = c_void_p()
        cid = agent_id._to_c() if agent_id is not None else None
        check(L.lib().shmex_agent_open(exchange._handle(), bname.encode(), arr, n,
                                       name.encode() if name else None,
                                       byref(cid) if cid is not None else None, byref(self._a)))
        out = L.Id()
        check(L.lib().shmex_agent_id(self._a, byref(out)))
        self.agent_id = EntityId._from_c(out)
        self._actions = {name.encode(): _Spec(getattr(behavior, meth))
                         for name, meth in type(behavior).behavior_actions().items()}
        self._loops = type(behavior).behavior_loops()
        self._shutdown = threading.Event()
        self._state_lock = threading.Lock()
        self._started = False
        self._stopped = False
        self._threads: list[threading.Thread] = []
        self._loop_errors: list[BaseException] = []
        self._pool: ThreadPoolExecutor | None = None
        self._lib = L.lib()
        self._reply = self._lib.shmex_request_reply

    def __repr__(self) -> str:
        return f"Agent<{type(self.behavior).__name__}; {self.agent_id}>"

    # ----------------------------------------------------------- lifecycle

    def run(self) -> None:
        """Start the agent, wait for a shutdown, and shut it down."""
        try:
            self.start()
            while not self._shutdown.wait(1.0):
                pass
        finally:
            self.shutdown()

    def start(self) -> None:
        """Run the setup hook, start the loops and the listener thread."""
        with self._state_lock:
            if self._stopped:
                raise RuntimeError("the agent was shut down")
            if self._started:
                return
            self._started = True
            self.behavior.on_setup()
            if self.config.max_action_concurrency and self.config.max_action_concurrency > 1:
                self._pool = ThreadPoolExecutor(self.config.max_action_concurrency, thread_name_prefix="shmex-action")
            for name in self._loops:
                t = threading.Thread(target=self._run_loop, args=(name,), name=f"shmex-loop-{name}", daemon=True)
                t.start()
                self._threads.append(t)
            t = threading.Thread(target=self._listen, name="shmex-listener", daemon=True)
            t.start()
            self._threads.append(t)

    def listener_thread(self) -> threading.Thread | None:
        """The thread that receives requests (and runs the actions when
        they are not run in a pool), once started."""
        for t in self._threads:
            if t.name == "shmex-listener":
                return t
        return None

    def signal_shutdown(self) -> None:
        """Ask the agent to stop (from any thread, an action or a loop
        included); :meth:`run` then shuts it down."""
        self._shutdown.set()
        a = self._a
        if a is not None and not self.exchange._closed:
            L.lib().shmex_agent_shutdown(a)

    def shutdown(self) -> None:
        """Stop receiving, wait for the running actions and the loops, run
        the shutdown hook, and terminate the agent's mailbox (requests still
        queued are answered with errors). Idempotent."""
        with self._state_lock:
            if self._stopped:
                return
            self._stopped = True
            self.signal_shutdown()
            current = threading.current_thread()
            for t in self._threads:
                if t is not current:
                    t.join()
            if self._pool is not None:
                self._pool.shutdown(wait=True)
            if self._started:
                self.behavior.on_shutdown()
            a, self._a = self._a, None
            if not self.exchange._closed:
                L.lib().shmex_agent_close(a)
        if self._loop_errors:
            raise self._loop_errors[0]

    def _run_loop(self, name: str) -> None:
        try:
            getattr(self.behavior, name)(self._shutdown)
        except BaseException as e:  # a failed loop stops the agent
            log.warning("loop %s of %s failed: %r; shutting down", name, self, e)
            self._loop_errors.append(e)
            self.signal_shutdown()

    # -------------------------------------------------------------- serving

    def _listen(self) -> None:
        lib = L.lib()
        recv = lib.shmex_agent_recv
        char = ctypes.c_char  # (char * n).from_address(p).raw: half of ctypes.string_at's cost
        req = c_void_p()
        msg = L.Message()
        reqref, msgref = byref(req), byref(msg)
        a = self._a
        execute = self._execute
        while True:
            rc = recv(a, L.FOREVER, reqref, msgref)
            if rc < 0:
                if rc not in (L.ESHUTDOWN, L.ECLOSED, L.EBADHANDLE):
                    log.error("%s stopped receiving: %s", self, error(rc))
                break
            name = (char * msg.action_len).from_address(msg.action).raw if msg.action_len else b""
            n = msg.args_len
            args = (char * n).from_address(msg.args).raw if n else b""
            if self._pool is not None:
                self._pool.submit(execute, req.value, name, args)
            else:
                execute(req.value, name, args)
        self._shutdown.set()

    def _execute(self, r: int, name: bytes, args: bytes) -> None:
        lib = self._lib
        spec = self._actions.get(name)
        if spec is None:
            lib.shmex_request_fail(r, b"UnknownActionError",
                                   f"{type(self.behavior).__name__} has no action {name.decode(errors='replace')!r}".encode())
            return
        try:
            value = self.exchange.unpack(args) if args else None
            result = spec.call(value)
            out = self.exchange.pack(result)
        except _BadArguments as e:
            lib.shmex_request_fail(r, b"BadArgumentsError", str(e).encode())
            return
        except TypeError as e:
            kind = b"BadArgumentsError" if "argument" in str(e) else b"TypeError"
            lib.shmex_request_fail(r, kind, str(e).encode())
            return
        except Exception as e:
            lib.shmex_request_fail(r, type(e).__name__.encode(), str(e).encode())
            return
        finally:
            value = None  # payloads in the arguments are released when the action kept none
        self._reply(r, out, len(out))
