"""Python's multiprocessing.Pool on one issue 3 workload, as a Python user writes it.

    python3 bench/mp_pool.py '{"workload": "w1", "workers": 2, ...sizes}'

prints one JSON line: {"value": ...} in the workload's unit (and "coldValue" for latency).
The pool runs in this process tree only; the bench (bench/run.ts) starts one per measurement.

`pool.map(fn, jobs)` with its default chunksize (a quarter of a fair share per task), and
`pool.apply` per round trip for latency. Like the Node contenders, W1-W3 and latency are timed
warm and every result is checked; W4 is timed cold, from creating the pool to the end of its
last map. W2's jobs are a Python loop calibrated here to the same ~10 ms per job.
"""
import json
import math
import multiprocessing
import statistics
import sys
import time
from array import array


def square(x):
    return x * x


def spin(n):
    acc = 0.0
    for i in range(n):
        acc = (acc + math.sqrt(i)) % 1e9
    return acc


def total(values):
    return sum(values)


def wait_ms(ms):
    time.sleep(ms / 1000)


# As bench/measure.ts: the same warm-up, and W1 timed as the median of a few maps.
WARM_UP_MAPS = 8
WARM_UP_BUDGET_S = 1.5
W1_TIMED_MAPS = 3


def warm_up(run):
    t0 = time.perf_counter()
    for _ in range(WARM_UP_MAPS):
        if time.perf_counter() - t0 > WARM_UP_BUDGET_S:
            break
        run()


def checked_map(pool, fn, jobs, expected):
    results = pool.map(fn, jobs)
    if results != expected:
        raise SystemExit(f"mp.Pool: wrong results for {fn.__name__}")


def timed(run):
    t0 = time.perf_counter()
    run()
    return time.perf_counter() - t0


def calibrate_spin(target_ms):
    probe = 20_000
    spin(probe)
    samples = []
    for _ in range(7):
        t0 = time.perf_counter()
        spin(probe)
        samples.append(time.perf_counter() - t0)
    return max(100, round(probe * (target_ms / 1000) / statistics.median(samples)))


def measure(args):
    workload = args["workload"]
    workers = args["workers"]
    if workload == "w4":
        jobs = list(range(args["w4JobsPerMap"]))
        expected = [square(j) for j in jobs]
        t0 = time.perf_counter()
        with multiprocessing.Pool(workers, initializer=wait_ms, initargs=(args["w4SetupMs"],)) as pool:
            for _ in range(args["w4Maps"]):
                checked_map(pool, square, jobs, expected)
            return {"value": time.perf_counter() - t0}

    with multiprocessing.Pool(workers) as pool:
        if workload == "w1":
            jobs = list(range(args["w1Jobs"]))
            expected = [square(j) for j in jobs]
            warm_up(lambda: checked_map(pool, square, jobs, expected))
            seconds = [timed(lambda: checked_map(pool, square, jobs, expected)) for _ in range(W1_TIMED_MAPS)]
            return {"value": len(jobs) / statistics.median(seconds)}

        if workload == "w2":
            n = calibrate_spin(args["w2JobMs"])
            jobs = [n] * args["w2Jobs"]
            one = spin(n)
            expected = [one] * len(jobs)
            checked_map(pool, spin, jobs[: workers * 4], expected[: workers * 4])
            # Bracketed by the serial run, half before and half after, as for the Node contenders.
            half = len(jobs) // 2
            before = timed(lambda: [spin(j) for j in jobs[:half]])
            wall = timed(lambda: checked_map(pool, spin, jobs, expected))
            serial = before + timed(lambda: [spin(j) for j in jobs[half:]])
            return {"value": serial / (wall * workers)}

        if workload == "w3":
            count = args["w3JobBytes"] // 8
            jobs = [array("d", ((i % 1000) * 0.5 + j for i in range(count))) for j in range(args["w3Jobs"])]
            expected = [total(job) for job in jobs]
            warm_up(lambda: checked_map(pool, total, jobs, expected))
            seconds = timed(lambda: checked_map(pool, total, jobs, expected))
            return {"value": len(jobs) * args["w3JobBytes"] / 2**20 / seconds}

        if workload == "latency":
            def round_trips(count):
                samples = []
                for i in range(count):
                    t0 = time.perf_counter()
                    result = pool.apply(square, (i,))
                    samples.append(time.perf_counter() - t0)
                    if result != i * i:
                        raise SystemExit(f"mp.Pool: wrong result for job {i}")
                return statistics.median(samples) * 1000

            cold = round_trips(args["latencyColdSamples"])
            round_trips(args["latencyWarmup"] - args["latencyColdSamples"])
            return {"value": round_trips(args["latencySamples"]), "coldValue": cold}

    raise SystemExit(f"mp.Pool: unknown workload {workload}")


if __name__ == "__main__":
    print(json.dumps(measure(json.loads(sys.argv[1]))), flush=True)
