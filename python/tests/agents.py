"""Behaviors of the tests: agents served by Python processes."""

from __future__ import annotations

import os
import threading
import time

import shmex


class Base(shmex.Behavior):
    pass


class PyCalc(Base):
    """Mirror of the Go Calc agent of capi/capitest, in Python."""

    def __init__(self):
        self.calls = 0
        self.ticks = 0
        self.exchange = None

    @shmex.action
    def add(self, a, b):
        self.calls += 1
        return a + b

    @shmex.action
    def echo(self, value):
        return value

    @shmex.action
    def noop(self, value=None):
        return None

    @shmex.action
    def sum(self, payload):
        """The sum of a payload of float64s, read in place."""
        return float(payload.array("<f8").sum())

    @shmex.action
    def length(self, payload):
        return len(payload)

    @shmex.action
    def make(self, n):
        """A result lent from this process's arena: n bytes, byte i = i % 251."""
        loan = self._exchange().loan(n)
        a = loan.array("u1")
        a[:] = (_arange(n) % 251).astype("u1")
        return loan

    @shmex.action
    def fail(self, kind, message):
        if kind == "ValueError":
            raise ValueError(message)
        raise RuntimeError(message)

    @shmex.action
    def sleep(self, ms):
        time.sleep(ms / 1000)

    @shmex.action
    def ticks_seen(self):
        return self.ticks

    @shmex.loop
    def ticker(self, shutdown: threading.Event):
        while not shutdown.wait(0.01):
            self.ticks += 1

    def _exchange(self):
        return self.exchange


def _arange(n):
    import numpy as np

    return np.arange(n, dtype="u8")


class ServedPyCalc(PyCalc):
    """PyCalc that knows its exchange, for `python -m tests.agents`."""


def main():
    """python -m tests.agents EXCHANGE ROOT: serve a PyCalc, print its id."""
    import sys

    name, root = sys.argv[1], sys.argv[2]
    idle = sys.argv[3] if len(sys.argv) > 3 else "default"
    with shmex.Exchange(name, root=root, idle=idle) as ex:
        b = ServedPyCalc()
        b.exchange = ex
        agent = shmex.Agent(b, exchange=ex, name="pycalc")
        agent.start()
        cpu = os.environ.get("SHMEX_BENCH_CPU")
        if cpu is not None:  # the benchmark pins the thread that serves
            os.sched_setaffinity(agent.listener_thread().native_id, {int(cpu)})
        print("ready", agent.agent_id, flush=True)
        agent.run()


if __name__ == "__main__":
    main()
