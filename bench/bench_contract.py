"""How long ``nb2api test`` takes on a notebook with 20 examples, against ``nb2api check``.

    python bench/bench_contract.py [--rounds 5]

Writes a notebook (pandas and pydantic set-up, four routes: a JSON body, a model, a DataFrame
and a GET with path and query parameters) with 20 example calls, then runs ``nb2api test`` and,
side by side as the anchor, ``nb2api check`` (the same load without the replay), each in a fresh
process, alternating. Prints the median wall-clock seconds of each, their ratio, and the replay
time that ``nb2api test`` itself reports.
"""

from __future__ import annotations

import argparse
import re
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import nbformat

SETUP = """#| setup
import numpy as np
import pandas as pd
from pydantic import BaseModel
COEF = 3.0
"""
API = """#| api
class House(BaseModel):
    area: float
    rooms: int

def predict(area: float, rooms: int = 1, city: str = "paris") -> dict:
    return {"price": area * COEF + rooms, "city": city}

def price(house: House) -> float:
    return house.area * COEF

def total(df: pd.DataFrame) -> dict:
    return {"sum": float(df["a"].sum()), "mean": float(df["a"].mean())}

#| route: GET /scale/{x}
def scale(x: int, by: float = 2.0) -> float:
    return x * by
"""


def notebook(folder: Path) -> Path:
    calls = []
    for i in range(5):
        calls.append(f"p{i} = predict({50.0 + i}, {i + 1}, 'city{i}')")
        calls.append(f"price(House(area={10.0 * (i + 1)}, rooms={i + 1}))")
        calls.append(f"total(pd.DataFrame({{'a': {list(range(i + 3))}}}))")
        calls.append(f"scale({i}, by={1.5 + i})")
    nb = nbformat.v4.new_notebook(cells=[
        nbformat.v4.new_code_cell(SETUP), nbformat.v4.new_code_cell(API),
        nbformat.v4.new_code_cell("#| example\n" + "\n".join(calls)),
    ])
    path = folder / "twenty.ipynb"
    nbformat.write(nb, path)
    return path


def timed(*args: str) -> tuple[float, str]:
    started = time.perf_counter()
    done = subprocess.run([sys.executable, "-m", "nb2api", *args], capture_output=True,
                          text=True, check=True)
    return time.perf_counter() - started, done.stdout


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--rounds", type=int, default=5)
    rounds = parser.parse_args().rounds
    with tempfile.TemporaryDirectory() as folder:
        path = notebook(Path(folder))
        tests, checks, replays = [], [], []
        for number in range(rounds):
            order = ("test", "check") if number % 2 == 0 else ("check", "test")
            for command in order:
                seconds, out = timed(command, str(path))
                if command == "test":
                    tests.append(seconds)
                    summary = out.strip().splitlines()[-1]
                    assert summary.startswith("20 passed, 0 failed"), out
                    replays.append(float(re.search(r"in ([\d.]+) s", summary).group(1)))
                else:
                    checks.append(seconds)
    test, check = statistics.median(tests), statistics.median(checks)
    print(f"nb2api test, 20 examples: median {test:.2f} s wall ({rounds} runs, fresh processes)")
    print(f"nb2api check (anchor, same load): median {check:.2f} s wall")
    print(f"ratio test/check: {test / check:.2f}x; replay alone (as reported): median "
          f"{statistics.median(replays) * 1000:.0f} ms")


if __name__ == "__main__":
    main()
