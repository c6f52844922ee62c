"""Fixtures of the Python tests. `go test ./python/` runs them with the
environment below set; run by hand:

    go build -buildmode=c-shared -o /tmp/libshmex.so ./capi
    SHMEX_LIBRARY=/tmp/libshmex.so python3 -m pytest python/tests

SHMEX_TEST_ROOT   an exchange root directory (default: a fresh one)
SHMEX_TEST_CALC   "NAME AGENT_ID": a Go Calc agent (capi/capitest) served in
                  exchange NAME under SHMEX_TEST_ROOT; tests that call it skip
                  without it
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import uuid

import pytest

import shmex

HERE = os.path.dirname(os.path.abspath(__file__))


@pytest.fixture(scope="session")
def root():
    r = os.environ.get("SHMEX_TEST_ROOT")
    if r:
        yield r
        return
    r = os.path.join("/dev/shm", f"shmex-{os.getuid()}", f"test-py-{uuid.uuid4().hex[:12]}")
    os.makedirs(r, mode=0o700)
    os.chmod(os.path.dirname(r), 0o700)
    yield r
    shutil.rmtree(r, ignore_errors=True)


@pytest.fixture
def exchange(root):
    name = f"py-{uuid.uuid4().hex[:8]}"
    with shmex.Exchange(name, root=root) as ex:
        yield ex


@pytest.fixture
def go_calc(root):
    spec = os.environ.get("SHMEX_TEST_CALC")
    if not spec:
        if os.environ.get("CI") == "true" and os.environ.get("SHMEX_TEST_DRIVEN") == "1":
            pytest.fail("SHMEX_TEST_CALC is not set")
        pytest.skip("no Go Calc agent (run through `go test ./python/`)")
    name, aid = spec.split()
    with shmex.Exchange(name, root=root) as ex:
        yield ex, shmex.EntityId.parse(aid)


class PyAgentProcess:
    """A PyCalc agent in a child Python process."""

    def __init__(self, name, root, idle="default"):
        env = dict(os.environ, PYTHONPATH=os.path.dirname(HERE) + os.pathsep + os.environ.get("PYTHONPATH", ""))
        self.proc = subprocess.Popen([sys.executable, "-m", "tests.agents", name, root, idle],
                                     stdout=subprocess.PIPE, env=env, cwd=os.path.dirname(HERE), text=True)
        line = self.proc.stdout.readline()
        if not line.startswith("ready "):
            self.proc.kill()
            raise RuntimeError(f"the agent process said {line!r}")
        self.agent_id = shmex.EntityId.parse(line.split()[1])

    def close(self):
        try:
            self.proc.wait(timeout=30)
        finally:
            if self.proc.poll() is None:
                self.proc.kill()
                self.proc.wait()


@pytest.fixture
def py_agent(exchange, root):
    p = PyAgentProcess(exchange.name, root)
    yield p
    if p.proc.poll() is None:
        try:
            exchange.get_handle(p.agent_id).shutdown(timeout=10)
        except shmex.ShmexError:
            pass
    p.close()
