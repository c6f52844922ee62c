"""The Python side of the Python-to-Go rows of the benchmark (bench/capi.go).

    python -m tests.bench ROOT NAME AGENT_ID IDLE rtt SECONDS SAMPLES_FILE [SIZE]
        no-op actions with SIZE bytes of arguments (default 64): a bulk phase
        timed as a whole, then every round trip timed on its own into
        SAMPLES_FILE (int64 ns, native endian); prints "rtt N MEAN_NS".
    python -m tests.bench ROOT NAME AGENT_ID IDLE pipeline SECONDS WINDOW
        WINDOW actions in flight; prints "pipeline N SECONDS_ELAPSED".
    python -m tests.bench ROOT NAME AGENT_ID IDLE loan SECONDS SAMPLES_FILE SIZE
        reserves arena room for SIZE bytes (printing "reserve NS"), then
        lends SIZE bytes as a numpy array and passes the loan to the agent's
        "length" action, each round trip timed; prints "first NS" (the first
        one) and "loan N MEAN_NS" (the others).
"""

from __future__ import annotations

import array
import os
import sys
import time

import shmex


def pin_this_thread(tid: int = 0):
    """Pin thread tid (0: this one) to $SHMEX_BENCH_CPU, if set: the
    measuring thread only, not the Go runtime's."""
    cpu = os.environ.get("SHMEX_BENCH_CPU")
    if cpu is not None:
        os.sched_setaffinity(tid, {int(cpu)})


def main(argv):
    root, name, aid, idle, mode, seconds = argv[:6]
    seconds = float(seconds)
    with shmex.Exchange(name, root=root, idle=idle) as ex:
        pin_this_thread()
        h = ex.get_handle(shmex.EntityId.parse(aid))
        clock = time.perf_counter_ns
        if mode == "rtt":
            out, size = argv[6], int(argv[7]) if len(argv) > 7 else 64
            args = b"x" * size
            act = h.action

            def one():
                act("noop", args).result()

            end = clock() + int(seconds * 1e8)  # warm-up: a tenth
            while clock() < end:
                one()
            n, t0 = 0, clock()
            end = t0 + int(seconds * 5e8)
            while clock() < end:
                for _ in range(100):
                    one()
                n += 100
            mean = (clock() - t0) / n
            samples = array.array("q")
            end = clock() + int(seconds * 5e8)
            while True:
                a = clock()
                one()
                b = clock()
                samples.append(b - a)
                if b >= end:
                    break
            with open(out, "wb") as f:
                samples.tofile(f)
            print(f"rtt {len(samples)} {mean:.1f}", flush=True)
        elif mode == "pipeline":
            window = int(argv[6])
            args = b"x" * 64
            act = h.action
            end = clock() + int(seconds * 1e8)
            while clock() < end:
                fs = [act("noop", args) for _ in range(window)]
                for f in fs:
                    f.result()
            n, t0 = 0, clock()
            end = t0 + int(seconds * 1e9)
            while clock() < end:
                fs = [act("noop", args) for _ in range(window)]
                for f in fs:
                    f.result()
                n += window
            print(f"pipeline {n} {(clock() - t0) / 1e9:.6f}", flush=True)
        elif mode == "loan":
            out, size = argv[6], int(argv[7])

            def one():
                loan = ex.loan(size)
                a = loan.array("f8")  # the numpy array, in place in the arena
                got = h.action("length", loan).result()
                if got != size or a.nbytes != size:
                    raise SystemExit(f"length {got}, want {size}")

            a = clock()
            ex.reserve(size)  # warm segments ahead, as a program would at startup
            print(f"reserve {clock() - a}", flush=True)
            a = clock()
            one()
            first = clock() - a
            print(f"first {first}", flush=True)
            samples = array.array("q")
            end = clock() + int(seconds * 1e9)
            while True:
                a = clock()
                one()
                b = clock()
                samples.append(b - a)
                if b >= end or len(samples) >= 1000:
                    break
            with open(out, "wb") as f:
                samples.tofile(f)
            print(f"loan {len(samples)} {sum(samples) / len(samples):.1f}", flush=True)
        else:
            raise SystemExit(f"unknown mode {mode}")


if __name__ == "__main__":
    main(sys.argv[1:])
