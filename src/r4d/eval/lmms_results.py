"""r4d's results in lmms-eval's shape, and lmms-eval's results read back as r4d's.

`LMMS_TASKS` maps each r4d benchmark to the lmms-eval task of `lmms_eval_tasks/r4d/` that
scores it (`r4d` -> `r4d_bench`, `mmsi` -> `r4d_mmsi_bench`, ...). Metric names are the same on
both sides (`<benchmark>_<metric>`, `_<category>`, `_split_<split>`, `_parse_rate`), keyed
`<metric>,<filter>` with the filter `none`. `REPORTED` lists the categories and splits each
task reports (its YAML's metric_list lists the same). This module imports no lmms-eval.
"""

from __future__ import annotations

from dataclasses import asdict

LMMS_TASKS = {
    "r4d": "r4d_bench",
    "r4dsim": "r4d_sim",
    "timebench": "timebench",
    "stibench": "sti_bench",
    "vlm4d": "vlm4d",
    "mmsi": "r4d_mmsi_bench",
    "omnispatial": "r4d_omni_spatial",
    "sat": "r4d_sat",
    "vstibench": "vstibench",
}
BENCHMARKS = {task: name for name, task in LMMS_TASKS.items()}  # lmms-eval task -> r4d
VERSION = 2.0  # the tasks' metadata.version (lmms_eval_tasks/r4d/_default_template_yaml)


def _r4d_tasks() -> tuple[str, ...]:
    from r4d.io.r4d_bench import TASKS

    return tuple(TASKS)


# The categories and splits each benchmark's task reports beside the overall score and the parse
# rate: the paper's R4D-Bench columns (the nine tasks, static / dynamic), STI-Bench's scenes,
# VLM4D's ego / exo, MMSI-Bench's question types and OmniSpatial's task types, as their files
# name them.
REPORTED: dict[str, tuple[tuple[str, ...], tuple[str, ...]]] = {
    "r4d": (_r4d_tasks(), ("static", "dynamic")),
    "r4dsim": (_r4d_tasks(), ("static", "dynamic")),
    "stibench": ((), ("indoor", "outdoor", "desktop")),
    "vlm4d": ((), ("ego", "exo")),
    "mmsi": (
        (
            "Positional Relationship (Obj.-Obj.)",
            "Positional Relationship (Cam.-Obj.)",
            "Positional Relationship (Cam.-Cam.)",
            "Positional Relationship (Obj.-Reg.)",
            "Positional Relationship (Cam.-Reg.)",
            "Positional Relationship (Reg.-Reg.)",
            "Attribute (Meas.)",
            "Attribute (Appr.)",
            "Motion (Obj.)",
            "Motion (Cam.)",
            "MSR",
        ),
        (),
    ),
    "omnispatial": (
        ("Complex_Logic", "Dynamic_Reasoning", "Perspective_Taking", "Spatial_Interaction"),
        (),
    ),
}


def task_metrics(bench) -> list[str]:
    """The metrics the benchmark's lmms-eval task lists, in its metric_list's order."""
    key = f"{bench.name}_{bench.metric}"
    categories, splits = REPORTED.get(bench.name, ((), ()))
    return [
        key,
        f"{key}_parse_rate",
        *(f"{key}_{c}" for c in categories),
        *(f"{key}_split_{s}" for s in splits),
    ]


def lmms_blocks(bench, results: dict, options, original: int, effective: int) -> dict:
    """summary.json's lmms-eval-shaped keys for a run of `bench`: `results` (under the lmms-eval
    task's name: its alias and every metric with its stderr), `configs` (the task, its metrics
    and the protocol), `versions`, `n-samples` (docs: one per item and option order, as the
    task's docs) and `higher_is_better` (the task's metric_list). `results` holds every metric
    r4d computes, a superset of the task's (which lists only the categories in `REPORTED`)."""
    task = LMMS_TASKS.get(bench.name, bench.name)
    return {
        "results": {task: {"alias": task, **results}},
        "configs": {
            task: {
                "task": task,
                "benchmark": bench.name,
                "output_type": "generate_until",
                "metric_list": [
                    {"metric": m, "higher_is_better": True} for m in task_metrics(bench)
                ],
                "protocol": {"benchmark": bench.name, **asdict(options)},
                "metadata": {"version": VERSION},
            }
        },
        "versions": {task: VERSION},
        "n-samples": {task: {"original": original, "effective": effective}},
        "higher_is_better": {task: dict.fromkeys(task_metrics(bench), True)},
    }
