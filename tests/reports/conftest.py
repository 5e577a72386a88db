"""Synthetic probed runs for the report tests (no training, no probing)."""

import numpy as np
import pytest

from attnconv_pl.reports.records import ProbedRun

METRICS = ("variance", "id_twonn", "stability_h0_w1", "stability_h0_w2", "stability_h0_bottleneck",
           "drift_prev_w2", "h0_bars")


def synthetic_run(label, group, layers=("stem", "mixer", "head"), epochs=(0, 1, 2), scale=1.0, diagrams=True):
    """A run whose metric m of layer i at epoch e is scale * (1 + i + 10 e) * (index of m + 1)."""
    rows = []
    for epoch in epochs:
        for i, layer in enumerate(layers):
            for k, metric in enumerate(METRICS):
                if metric.startswith("drift") and epoch == 0:
                    continue
                rows.append((epoch, layer, metric, scale * (1 + i + 10 * epoch) * (k + 1)))
        rows.append((epoch, "", "overhead_seconds", 0.5))
    diagram = [np.array([[0.0, 1.0], [0.0, 2.0]]), np.array([[0.5, 1.5]])]
    return ProbedRun(label=label, group=group, layers=list(layers), rows=rows,
                     diagrams={e: {layer: diagram for layer in layers} for e in (epochs[0], epochs[-1])} if diagrams
                     else {},
                     accuracy={epochs[-1]: 0.5},
                     description={"dataset": {"name": "digits", "split": "val", "probe_inputs": 100},
                                  "settings": {"representation": "flatten", "project_dim": 1024,
                                               "id_methods": ["twonn"], "topology": True, "max_dim": 0,
                                               "max_points": 500, "snapshot_dtype": "float16", "seed": 0}})


@pytest.fixture
def make_run():
    return synthetic_run
