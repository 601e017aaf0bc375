"""Writes efp_sample40.json: energyflow 1.4.0 EFPs (n=4, d=4, prime, hadronic measure,
beta=1, unnormalised) of the first 40 gluon and top jets of data/sample, exactly as
jetnet 0.2.5's w1efp computes them (jets reordered to [pt, eta, phi]).
Run from the repository root in a venv with energyflow==1.4.0 and numpy==1.26.4."""
import json

import energyflow as ef
import numpy as np

efpset = ef.EFPSet(("n==", 4), ("d==", 4), ("p==", 1), measure="hadr", beta=1, normed=None, coords="ptyphim")
out = {}
for name in ["g", "t"]:
    jets = np.load(f"data/sample/{name}_particle_features.npy")[:40]
    j = jets[:, :, [2, 0, 1]].astype(np.float64)
    out[name] = np.array([efpset.compute(x) for x in j]).tolist()
graphs = [[list(map(int, e)) for e in g] for g in efpset.graphs()]
json.dump({"graphs": graphs, "source": "energyflow 1.4.0, see make_reference.py", "efps": out},
          open("tests/vectors/efp/efp_sample40.json", "w"))

# Relative jet masses m/pT_jet of the same jets from energyflow's 4-vector utilities
# (massless constituents from (pT_rel, eta_rel, phi_rel)), the quantity W1M compares.
masses = {}
for name in ["g", "t"]:
    jets = np.load(f"data/sample/{name}_particle_features.npy")[:40].astype(np.float64)
    p4s = ef.p4s_from_ptyphims(jets[:, :, [2, 0, 1]])
    masses[name] = ef.ms_from_p4s(p4s.sum(axis=1)).tolist()
json.dump({"source": "energyflow 1.4.0 ms_from_p4s(sum of p4s_from_ptyphims), see make_reference.py", "masses": masses},
          open("tests/vectors/efp/relative_mass_sample40.json", "w"))
