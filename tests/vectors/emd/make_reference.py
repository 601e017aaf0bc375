"""Writes emd_reference.json: exact optimal-transport values from the tools jetnet trusts.

* "jets": energyflow 1.4.0 `emd.emds(gen, real)` with its defaults (R=1, beta=1, norm=False,
  periodic_phi=False) between the first 20 top jets ("gen") and the first 20 gluon jets
  ("real") of data/sample, jets reordered to [pt, eta, phi] exactly as jetnet's cov_mmd does.
* "transport": POT 0.9 `ot.emd2(a, b, C)` on seeded random balanced problems (some weights
  exactly zero, Euclidean and random costs).
Run from the repository root in a venv with energyflow==1.4.0, POT and numpy==1.26.4."""
import json

import energyflow as ef
import numpy as np
import ot

g = np.load("data/sample/g_particle_features.npy")[:20][..., [2, 0, 1]].astype(np.float64)
t = np.load("data/sample/t_particle_features.npy")[:20][..., [2, 0, 1]].astype(np.float64)
jets = ef.emd.emds(t, g)

rng = np.random.default_rng(7)
problems = []
for (n, m, kind) in [(1, 1, "euclid"), (1, 6, "euclid"), (7, 3, "random"), (20, 20, "euclid"),
                     (33, 17, "random"), (50, 50, "euclid"), (150, 150, "euclid"), (120, 90, "random")]:
    a = rng.random(n); b = rng.random(m)
    a[rng.random(n) < 0.2] = 0.0; b[rng.random(m) < 0.2] = 0.0
    if a.sum() == 0: a[0] = 1.0
    if b.sum() == 0: b[0] = 1.0
    a /= a.sum(); b /= b.sum()
    if kind == "euclid":
        x = rng.normal(size=(n, 2)); y = rng.normal(size=(m, 2)) + 0.3
        C = np.sqrt(((x[:, None] - y[None]) ** 2).sum(-1))
    else:
        C = rng.random((n, m)) * 3.0
    val = ot.emd2(a, b, C, numItermax=10_000_000)
    p = {"n": n, "m": m, "a": a.tolist(), "b": b.tolist(), "emd": float(val)}
    if kind == "euclid":  # cost = Euclidean distance between the stored points
        p.update(x=x.ravel().tolist(), y=y.ravel().tolist())
    else:
        p.update(cost=C.ravel().tolist())
    problems.append(p)

json.dump({"source": "energyflow 1.4.0 emd.emds / POT ot.emd2, see make_reference.py",
           "jets": {"gen": "t[:20]", "real": "g[:20]", "emds": jets.tolist()},
           "transport": problems}, open("tests/vectors/emd/emd_reference.json", "w"))
