"""Reference vectors for one MPGAN message-passing layer (tests/mpgan.rs,
`mp_layer_matches_pytorch`), written in the plain PyTorch style of the paper's model (pairs
[x_i, x_j] by broadcast + concatenation, masked sum over senders by multiplication), float64.

Layer: edge MLP 2F → 8 → 6 (LeakyReLU 0.2 after each), m_i = Σ_j mask_j e_ij, node MLP
[m_i, x_i] → 7 → 5 (LeakyReLU 0.2 between). x [3, 6, 4] ~ N(0, 1); mask [3, 6]: jet 0 has 4
real particles at positions 0, 2, 3, 5, jet 1 all 6, jet 2 none; padded particles keep random
features. Files: x, mask, w (loss weights [3, 6, 5]), out [3, 6, 5], grad_x, and each
parameter `fe.{0,2}.{weight,bias}`, `fn.{0,2}.{weight,bias}` with its gradient
`grad.<name>`, for L = Σ w ⊙ out.

Usage: python make_mpgan.py   (torch, numpy; writes next to itself)
"""
import os

import numpy as np
import torch
from torch import nn

torch.manual_seed(7)
torch.set_default_dtype(torch.float64)
F, FE, FN, OUT = 4, (8, 6), (7,), 5


def mlp(sizes, last_act):
    layers = []
    for i in range(len(sizes) - 1):
        layers.append(nn.Linear(sizes[i], sizes[i + 1]))
        if i + 2 < len(sizes) or last_act:
            layers.append(nn.LeakyReLU(0.2))
    return nn.Sequential(*layers)


fe = mlp([2 * F, *FE], True)
fn = mlp([FE[-1] + F, *FN, OUT], False)
x = torch.randn(3, 6, F, requires_grad=True)
mask = torch.tensor([[1, 0, 1, 1, 0, 1], [1] * 6, [0] * 6], dtype=torch.float64)
b, n, f = x.shape
e = fe(torch.cat([x.unsqueeze(2).expand(b, n, n, f), x.unsqueeze(1).expand(b, n, n, f)], -1))
m = (e * mask[:, None, :, None]).sum(2)
out = fn(torch.cat([m, x], -1))
w = torch.randn(out.shape)
(out * w).sum().backward()

here = os.path.dirname(os.path.abspath(__file__))
save = lambda name, t: np.save(os.path.join(here, name + ".npy"), t.detach().numpy().astype(np.float64))
save("x", x)
save("mask", mask)
save("w", w)
save("out", out)
save("grad_x", x.grad)
for prefix, net in (("fe", fe), ("fn", fn)):
    for name, p in net.named_parameters():
        save(f"{prefix}.{name}", p)
        save(f"grad.{prefix}.{name}", p.grad)
print("wrote", sorted(os.listdir(here)))
