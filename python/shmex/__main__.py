"""``python -m shmex serve MODULE:CLASS --exchange NAME [--root DIR] [--name N] [--agent-id ID]``

Runs an agent of the Behavior class MODULE:CLASS (made with no arguments) in
this process until it is shut down; prints ``ready <agent id>`` once it
serves. ``python -m shmex version`` prints the library's version.
"""

from __future__ import annotations

import argparse
import importlib
import sys

from . import Agent, EntityId, Exchange, version


def main(argv=None) -> int:
    p = argparse.ArgumentParser(prog="python -m shmex")
    sub = p.add_subparsers(dest="cmd", required=True)
    s = sub.add_parser("serve", help="run an agent")
    s.add_argument("behavior", help="MODULE:CLASS of a shmex.Behavior")
    s.add_argument("--exchange", required=True)
    s.add_argument("--root")
    s.add_argument("--name")
    s.add_argument("--agent-id", help="serve this registered agent instead of registering one")
    s.add_argument("--idle", default="default", choices=["default", "spin", "park", "backoff"])
    sub.add_parser("version", help="print libshmex's version")
    a = p.parse_args(argv)
    if a.cmd == "version":
        print(version())
        return 0
    mod, _, cls = a.behavior.partition(":")
    behavior = getattr(importlib.import_module(mod), cls)()
    with Exchange(a.exchange, root=a.root, idle=a.idle) as ex:
        agent = Agent(behavior, exchange=ex, name=a.name,
                      agent_id=EntityId.parse(a.agent_id) if a.agent_id else None)
        agent.start()
        print("ready", agent.agent_id, flush=True)
        agent.run()
    return 0


if __name__ == "__main__":
    sys.exit(main())
