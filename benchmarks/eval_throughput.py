"""Questions per second of an r4d student on R4D-Sim: generation vs option scoring, batch 1
vs batched.

    python benchmarks/eval_throughput.py --model DIR --bench DIR [--questions 32] [--batch 8]

Requests are built once (video decoding is not timed); each mode answers the same questions.
Target: batched option scoring >= 5x batch-1 generation.
"""

from __future__ import annotations

import argparse
import time
from dataclasses import replace
from pathlib import Path

from r4d.eval.adapters import R4DAdapter
from r4d.eval.benchmarks import get_benchmark


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", type=Path, required=True)
    parser.add_argument("--bench", type=Path, required=True)
    parser.add_argument("--questions", type=int, default=32)
    parser.add_argument("--batch", type=int, default=8)
    args = parser.parse_args()
    bench = get_benchmark("r4dsim")
    options = replace(bench.default_options(), frames=16)
    items = bench.load(args.bench)[: args.questions]
    requests = [bench.request(item, options) for item in items]
    rates = {}
    for mode in ("generate", "score"):
        adapter = R4DAdapter(args.model, mode, max_new_tokens=8)
        for batch in (1, args.batch):
            start = time.perf_counter()
            for a in range(0, len(requests), batch):
                adapter.answer(requests[a : a + batch])
            rates[(mode, batch)] = len(requests) / (time.perf_counter() - start)
            print(f"{mode:8s} batch {batch:2d}: {rates[(mode, batch)]:.2f} questions/s")
    ratio = rates[("score", args.batch)] / rates[("generate", 1)]
    print(f"batched option scoring / batch-1 generation: {ratio:.1f}x (target >= 5x)")


if __name__ == "__main__":
    main()
