"""The Python side of the Python-to-Go rows of the benchmark (bench/capi.go).

    python -m tests.bench ROOT NAME AGENT_ID IDLE rtt SECONDS SAMPLES_FILE [SIZE]
        no-op actions with SIZE bytes of arguments (default 64): a bulk phase
        timed as a whole, then every round trip timed on its own into
        SAMPLES_FILE (int64 ns, native endian); prints "rtt N MEAN_NS".
    python -m tests.bench ROOT NAME AGENT_ID IDLE pipeline SECONDS WINDOW
        WINDOW actions in flight; prints "pipeline N SECONDS_ELAPSED".
    python -m tests.bench ROOT NAME AGENT_ID IDLE loans SECONDS SIZE RTT_FILE LOAN1K_FILE LOAN_FILE
        reserves arena room for SIZE bytes (printing "reserve NS"), makes a
        first call of each kind below (printing "first NS", the SIZE loan's),
        then for SECONDS times, in rounds, each kind once per round in turn:
        a 1 KiB no-op round trip (into RTT_FILE), and 1 KiB and SIZE bytes
        lent as a numpy array and passed to the agent's "length" action
        (into LOAN1K_FILE and LOAN_FILE); prints "loans ROUNDS RTT_MEAN_NS
        LOAN1K_MEAN_NS LOAN_MEAN_NS". Interleaved, the three see the same
        load: their ratios hold on a busy machine.
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
        elif mode == "loans":
            size = int(argv[6])
            outs = argv[7:10]
            b1k = b"x" * 1024
            act = h.action

            def rtt():
                act("noop", b1k).result()

            def lend(n):
                def one():
                    loan = ex.loan(n)
                    a = loan.array("f8")  # the numpy array, in place in the arena
                    got = act("length", loan).result()
                    if got != n or a.nbytes != n:
                        raise SystemExit(f"length {got}, want {n}")
                return one

            kinds = [rtt, lend(1024), lend(size)]
            a = clock()
            ex.reserve(1024, size)  # warm segments ahead, as a program would at startup
            print(f"reserve {clock() - a}", flush=True)
            for k in kinds[:2]:
                k()
            a = clock()
            kinds[2]()
            print(f"first {clock() - a}", flush=True)
            end = clock() + int(seconds * 1e8)  # warm-up: a tenth
            while clock() < end:
                for k in kinds:
                    k()
            samples = [array.array("q") for _ in kinds]
            rounds, end = 0, clock() + int(seconds * 1e9)
            while True:
                for i in range(3):
                    j = (rounds + i) % 3  # each kind first in turn
                    a = clock()
                    kinds[j]()
                    samples[j].append(clock() - a)
                rounds += 1
                if clock() >= end or rounds >= 3000:
                    break
            for out, smp in zip(outs, samples):
                with open(out, "wb") as f:
                    smp.tofile(f)
            means = " ".join(f"{sum(smp) / len(smp):.1f}" for smp in samples)
            print(f"loans {rounds} {means}", flush=True)
        else:
            raise SystemExit(f"unknown mode {mode}")


if __name__ == "__main__":
    main(sys.argv[1:])
