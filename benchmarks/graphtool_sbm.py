"""graph-tool's nested SBM with real-exponential edge weights, run by the system python that has graph-tool.

Not imported by the workbench: :mod:`bench_communities` runs it as
``/usr/bin/python3 benchmarks/graphtool_sbm.py IN.npz OUT.json`` (Debian's
``python3-graph-tool`` is built for the system interpreter, not the venv).
``IN.npz`` holds symmetric weight matrices ``W0, W1, ...`` and ``seeds``;
``OUT.json`` gets the lowest-level block of every vertex for each matrix.
"""

import json
import sys

import numpy as np


def fit(W, seed):
    import graph_tool.all as gt

    gt.seed_rng(int(seed))
    np.random.seed(int(seed))
    iu, ju = np.triu_indices(W.shape[0], k=1)
    keep = W[iu, ju] > 0
    g = gt.Graph(directed=False)
    g.add_vertex(W.shape[0])
    weight = g.new_edge_property("double")
    g.add_edge_list(np.column_stack([iu[keep], ju[keep], W[iu, ju][keep]]), eprops=[weight])
    state = gt.minimize_nested_blockmodel_dl(g, state_args=dict(recs=[weight], rec_types=["real-exponential"]))
    return [int(b) for b in state.get_levels()[0].get_blocks().a]


def main(src, dst):
    data = np.load(src)
    seeds = data["seeds"]
    out = [fit(data[f"W{i}"], seeds[i]) for i in range(len(seeds))]
    with open(dst, "w") as fh:
        json.dump(out, fh)


if __name__ == "__main__":
    main(*sys.argv[1:3])
