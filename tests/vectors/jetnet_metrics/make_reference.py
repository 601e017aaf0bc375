"""Writes jetnet_metrics.json: jetnet 0.2.5's COV/MMD, FPD and KPD (and the 36 d<=4 EFPs of a
few jets) on fixed pairs of the built-in sample, the fixtures of tests/metrics_jetnet.rs.

Pairs ("real" first):
  g_vs_t        data/sample/g vs data/sample/t
  g_vs_gwide    g vs g with eta_rel and phi_rel of every real particle multiplied by 1.2
  g_vs_g        first 1000 g jets vs last 1000 g jets (a truth-vs-truth floor)
jetnet's module-level rng is re-seeded before cov_mmd (it is unseeded in jetnet); fpd/kpd use
their own seed=42 defaults. Run from the repository root in a venv with jetnet==0.2.5,
energyflow==1.4.0, numpy==1.26.4 (see ../shared/peers/setup.sh)."""
import json
import time

import energyflow as ef
import numpy as np
import jetnet.evaluation as je
import jetnet.evaluation.gen_metrics as gm

g = np.load("data/sample/g_particle_features.npy").astype(np.float64)
t = np.load("data/sample/t_particle_features.npy").astype(np.float64)
gwide = g.copy()
gwide[..., 0:2] *= 1.2
pairs = {"g_vs_t": (g, t), "g_vs_gwide": (g, gwide), "g_vs_g": (g[:1000], g[1000:])}

out = {"source": "jetnet 0.2.5 cov_mmd/fpd/kpd, energyflow 1.4.0; see make_reference.py", "pairs": {}}
for name, (real, gen) in pairs.items():
    r, s = real[..., :3], gen[..., :3]
    res = {}
    gm.rng = np.random.default_rng(1)
    t0 = time.time(); cov, mmd = je.cov_mmd(r, s); res["cov_mmd_seconds"] = time.time() - t0
    res["cov"], res["mmd"] = float(cov), float(mmd)
    t0 = time.time()
    fr, fg = je.get_fpd_kpd_jet_features(r), je.get_fpd_kpd_jet_features(s)
    res["efp_seconds"] = time.time() - t0
    t0 = time.time(); v, e = je.fpd(fr, fg); res["fpd_seconds"] = time.time() - t0
    res["fpd"] = [float(v), float(e)]
    t0 = time.time(); v, e = je.kpd(fr, fg); res["kpd_seconds"] = time.time() - t0
    res["kpd"] = [float(v), float(e)]
    out["pairs"][name] = res
    print(name, res, flush=True)

efpset = ef.EFPSet(("d<=", 4), measure="hadr", beta=1, normed=None, coords="ptyphim")
graphs = [[list(map(int, e)) for e in gr] for gr in efpset.graphs()]
vals = np.array([efpset.compute(x) for x in g[:10][..., [2, 0, 1]]])
out["efp_d4"] = {"graphs": graphs, "jets": "g[:10]", "values": vals.tolist()}
json.dump(out, open("tests/vectors/jetnet_metrics/jetnet_metrics.json", "w"), indent=1)
