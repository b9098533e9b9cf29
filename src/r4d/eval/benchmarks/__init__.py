"""One module per benchmark family: its files, its official prompt and extraction."""

from __future__ import annotations

from r4d.eval.benchmarks.mmsi import MMSIBench
from r4d.eval.benchmarks.omnispatial import OmniSpatial
from r4d.eval.benchmarks.r4d import R4DBench, R4DSim, TimeBench
from r4d.eval.benchmarks.sat import SATReal
from r4d.eval.benchmarks.sti import STIBench
from r4d.eval.benchmarks.vlm4d import VLM4D
from r4d.eval.benchmarks.vsti import VSTIBench

BENCHMARKS = {
    b.name: b
    for b in (
        R4DBench,
        R4DSim,
        TimeBench,
        STIBench,
        VLM4D,
        MMSIBench,
        OmniSpatial,
        SATReal,
        VSTIBench,
    )
}


def get_benchmark(name: str):
    if name not in BENCHMARKS:
        from r4d.errors import InputError

        raise InputError(f"unknown benchmark {name!r}; known: {sorted(BENCHMARKS)}", field="bench")
    return BENCHMARKS[name]()
