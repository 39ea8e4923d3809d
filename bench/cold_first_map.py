"""Cold start (a), issue 13, for Python's multiprocessing.Pool: a fresh Pool(workers) in this fresh
process, its first map of `jobs` tiny jobs (x*x), the pool closed, and out.

    python3 bench/cold_first_map.py <jobs> <workers>

bench/run.ts times this process from spawn to exit (the figure the targets use); this prints what
it saw itself, as one JSON line, in the same fields as bench/cold-first-map.ts:
{"importMs", "mapMs" (pool created -> first map's results), "checkMs", "closeMs"}.
`multiprocessing` is imported after the clock starts, as `mapscale` is there.
"""
import time

started = time.perf_counter()
import json  # noqa: E402
import multiprocessing  # noqa: E402
import sys  # noqa: E402


def square(x):
    return x * x


if __name__ == "__main__":
    count = int(sys.argv[1])
    workers = int(sys.argv[2])
    jobs = list(range(count))
    imported = time.perf_counter()
    with multiprocessing.Pool(workers) as pool:
        results = pool.map(square, jobs)
        mapped = time.perf_counter()
        # Every result checked; the parent takes this off the wall time (a loop in Python is dear).
        if len(results) != count or any(r != i * i for i, r in enumerate(results)):
            raise SystemExit("cold_first_map.py: wrong results")
        checked = time.perf_counter()
    closed = time.perf_counter()
    ms = lambda a, b: (b - a) * 1000  # noqa: E731
    print(json.dumps({
        "importMs": ms(started, imported), "mapMs": ms(imported, mapped),
        "checkMs": ms(mapped, checked), "closeMs": ms(checked, closed),
    }), flush=True)
