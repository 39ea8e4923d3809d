"""Cold start (b), issue 13: the same trivial app with Python's multiprocessing.Pool(2).
bench/run.ts times `python3 bench/cold-app/mp_pool.py <jobs>` from spawn to exit."""
import json
import multiprocessing
import sys


def square(x):
    return x * x


if __name__ == "__main__":
    with multiprocessing.Pool(2) as pool:
        results = pool.map(square, range(int(sys.argv[1]) if len(sys.argv) > 1 else 10))
    print(json.dumps({"results": results}))
