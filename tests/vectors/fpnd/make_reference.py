"""Writes fpnd_reference.json: jetnet 0.2.5's own ParticleNet activations (fc1, pre-ReLU) for the
first 32 gluon jets of data/sample, and jetnet.evaluation.fpnd on the 2,000 sample gluons and
tops (jet_type "g"). torch_cluster (a C++ build) is replaced by a pure-torch knn_graph with the
same semantics (k nearest by Euclidean distance within each jet, self excluded, ties by
index); JetNet-30 jets have 30 real particles almost always, so ties are rare.
Run from the repository root in a venv with torch, torch_geometric 2.8.1 and jetnet 0.2.5."""
import json
import sys
import types

import numpy as np
import torch


def knn_graph(x, k, batch=None, loop=False, flow="source_to_target", **_):
    rows, cols = [], []
    for b in torch.unique(batch):
        idx = torch.nonzero(batch == b).flatten()
        d = torch.cdist(x[idx].double(), x[idx].double())
        if not loop:
            d.fill_diagonal_(float("inf"))
        kk = min(k, len(idx) - (0 if loop else 1))
        # stable: ties go to the lower index
        order = torch.argsort(d, dim=1, stable=True)[:, :kk]
        for i in range(len(idx)):
            rows.extend([idx[order[i]].tolist()])
            cols.extend([[idx[i].item()] * kk])
    src = torch.tensor([j for r in rows for j in r])
    dst = torch.tensor([i for c in cols for i in c])
    return torch.stack([src, dst]) if flow == "source_to_target" else torch.stack([dst, src])


import importlib.machinery  # noqa: E402

_tc = types.ModuleType("torch_cluster")
_tc.knn_graph = knn_graph
_tc.__spec__ = importlib.machinery.ModuleSpec("torch_cluster", None)
sys.modules["torch_cluster"] = _tc
import jetnet.evaluation as je  # noqa: E402
from jetnet.datasets import JetNet  # noqa: E402
from jetnet.evaluation import gen_metrics as gm  # noqa: E402

g = np.load("data/sample/g_particle_features.npy")[..., :3].astype(np.float32)
t = np.load("data/sample/t_particle_features.npy")[..., :3].astype(np.float32)
gm._init_fpnd_dict("jetnet", "g", 30, 3, "cpu")
pnet = gm._eval_module.fpnd_dict["jetnet"][30]["g"]["pnet"].eval()
x = torch.tensor(g[:32].copy())
JetNet.fpnd_norm(x, inplace=True)
with torch.no_grad():
    act = pnet(x, ret_activations=True).numpy()
out = {"source": "jetnet 0.2.5 ParticleNet with a pure-torch knn_graph, see make_reference.py",
       "activations_g32": act.tolist(),
       "fpnd_g_sample_vs_g": float(je.fpnd(torch.tensor(g.copy()), "g", device="cpu", use_tqdm=False)),
       "fpnd_t_sample_vs_g": float(je.fpnd(torch.tensor(t.copy()), "g", device="cpu", use_tqdm=False))}
json.dump(out, open("tests/vectors/fpnd/fpnd_reference.json", "w"))
print({k: v for k, v in out.items() if k.startswith("fpnd")})
