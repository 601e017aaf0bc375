"""Converts jetnet 0.2.5's trained ParticleNet (MIT licence, see LICENSE-jetnet) and the real-jet
activation statistics into one safetensors file that jetgen's FPND reads:
  edge_nets.{0,1,2}.model.{0,3,6}.{weight,bias}   Linear layers of the three EdgeConv MLPs
  edge_nets.{0,1,2}.model.{1,4,7}.{weight,bias,running_mean,running_var}   BatchNorm1d (eval)
  fc1.0.{weight,bias}                             Linear(451, 256), the FPND activations
  mu_{g,q,t} [256] and sigma_{g,q,t} [256, 256]   float64, jetnet's cached real statistics
Run once in a venv with torch and jetnet==0.2.5:  python assets/fpnd/convert.py"""
import os

import jetnet
import numpy as np
import torch
from safetensors.torch import save_file

res = os.path.join(os.path.dirname(jetnet.__file__), "evaluation", "fpnd_resources", "jetnet", "30_particles")
sd = torch.load(os.path.join(res, "pnet_state_dict.pt"), map_location="cpu", weights_only=False)
out = {k: v.float().contiguous() for k, v in sd.items()
       if (k.startswith("edge_nets.") or k.startswith("fc1.")) and "num_batches_tracked" not in k}
for c in "gqt":
    out[f"mu_{c}"] = torch.from_numpy(np.loadtxt(os.path.join(res, f"{c}_mu.txt"))).double().contiguous()
    out[f"sigma_{c}"] = torch.from_numpy(np.loadtxt(os.path.join(res, f"{c}_sigma.txt"))).double().contiguous()
here = os.path.dirname(os.path.abspath(__file__))
save_file(out, os.path.join(here, "particlenet_jetnet30.safetensors"),
          metadata={"source": "jetnet 0.2.5 evaluation/fpnd_resources/jetnet/30_particles (MIT)"})
print(len(out), "tensors")
