"""Agents written in Python: in this process and in another one."""

from __future__ import annotations

import threading
import uuid

import pytest

import shmex
from tests.agents import PyCalc

np = pytest.importorskip("numpy")


class Kw(shmex.Behavior):
    def __init__(self):
        self.setup = self.down = False

    def on_setup(self):
        self.setup = True

    def on_shutdown(self):
        self.down = True

    @shmex.action
    def none(self):
        return "none"

    @shmex.action
    def opt(self, a=1, b=2):
        return [a, b]

    @shmex.action
    def kw(self, **kw):
        return sorted(kw)

    @shmex.action
    def one(self, x):
        return x

    @shmex.action
    def stop(self):
        raise KeyError("k")


def test_in_process_agent(exchange):
    b = Kw()
    agent = shmex.Agent(b, exchange=exchange)
    agent.start()
    assert b.setup
    h = exchange.get_handle(agent.agent_id)
    assert h.action("none").result(timeout=30) == "none"
    assert h.action("opt").result() == [1, 2]
    assert h.action("opt", 5).result() == [5, 2]
    assert h.action("opt", 5, 6).result() == [5, 6]
    assert h.action("opt", b=9).result() == [1, 9]
    assert h.action("kw", x=1, y=2).result() == ["x", "y"]
    assert h.action("one", [1, 2]).result() == [1, 2]
    with pytest.raises(KeyError):
        h.action("stop").result()
    with pytest.raises(shmex.RemoteError) as e:
        h.action("none", 1).result()
    assert e.value.kind == "BadArgumentsError"
    with pytest.raises(shmex.RemoteError) as e:
        h.action("opt", 1, 2, 3).result()
    assert e.value.kind == "BadArgumentsError"
    h.shutdown(timeout=30)
    agent.run()  # returns: the shutdown request ended it
    assert b.down
    assert exchange.status(agent.agent_id) == shmex.MailboxStatus.TERMINATED
    with pytest.raises(shmex.AgentTerminatedError):
        h.action("none").result(timeout=30)


def test_agent_loops_and_concurrency(exchange):
    b = PyCalc()
    b.exchange = exchange
    agent = shmex.Agent(b, exchange=exchange, config=shmex.AgentRunConfig(max_action_concurrency=4))
    t = threading.Thread(target=agent.run)
    t.start()
    h = exchange.get_handle(agent.agent_id)
    # Pings flow while actions run: a ping sent after four slow actions
    # (the concurrency cap) is answered before any of them ends. No bound
    # on the ping's time: the slow actions are long enough (3 s) for a
    # loaded machine.
    slow = [h.action("sleep", 3000) for _ in range(4)]
    h.ping(timeout=30)
    assert not any(f.done() for f in slow)
    for f in slow:
        assert f.result(timeout=30) is None
    while h.action("ticks_seen").result() < 3:
        pass
    agent.signal_shutdown()
    t.join(30)
    assert not t.is_alive()


def test_agent_with_registered_id(exchange):
    aid = exchange.register_agent(PyCalc)
    agent = shmex.Agent(PyCalc(), exchange=exchange, agent_id=aid)
    assert agent.agent_id == aid
    agent.start()
    assert exchange.get_handle(aid).action("add", 1, 2).result(timeout=30) == 3
    agent.shutdown()
    # An id nobody registered is registered by the agent that serves it.
    fresh = shmex.AgentId(uuid.uuid4())
    agent = shmex.Agent(PyCalc(), exchange=exchange, agent_id=fresh)
    assert exchange.status(fresh) == shmex.MailboxStatus.ACTIVE
    agent.shutdown()
    assert exchange.status(fresh) == shmex.MailboxStatus.TERMINATED


def test_python_to_python_across_processes(exchange, py_agent):
    h = exchange.get_handle(py_agent.agent_id)
    assert py_agent.agent_id in exchange.discover("PyCalc")
    assert h.action("add", 20, 22).result(timeout=30) == 42
    # A 2-D array lent by this process, summed by the other in place.
    loan = exchange.loan(1000 * 100 * 8)
    a = loan.array("<f8", (1000, 100))
    a[:] = 1.5
    assert h.action("sum", loan).result(timeout=30) == 1.5 * 1000 * 100
    # A result lent by the other process, read here in place.
    p = h.action("make", 4096).result(timeout=30)
    assert np.array_equal(p.array(), (np.arange(4096) % 251).astype("u1"))
    with pytest.raises(ValueError):
        h.action("fail", "ValueError", "py").result(timeout=30)
    h.shutdown(timeout=30)
    assert py_agent.proc.wait(timeout=30) == 0


def test_serve_command(exchange, root):
    """python -m shmex serve MODULE:CLASS runs an agent in its own process."""
    import os
    import subprocess
    import sys

    here = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    env = dict(os.environ, PYTHONPATH=here + os.pathsep + os.environ.get("PYTHONPATH", ""))
    p = subprocess.Popen([sys.executable, "-m", "shmex", "serve", "tests.agents:PyCalc", "--exchange", exchange.name,
                          "--root", root, "--name", "cli"], stdout=subprocess.PIPE, text=True, env=env, cwd=here)
    try:
        line = p.stdout.readline()
        assert line.startswith("ready agent:"), line
        aid = shmex.EntityId.parse(line.split()[1])
        h = exchange.get_handle(aid)
        assert h.action("add", 1, 2).result(timeout=30) == 3
        h.shutdown(timeout=30)
        assert p.wait(timeout=30) == 0
    finally:
        if p.poll() is None:
            p.kill()
            p.wait()
