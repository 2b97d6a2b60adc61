#!/usr/bin/env python3
"""Operator-level profile of one tiny/16@128 DISTL step (PyTorch eager with SDPA, the same aten
operators sevit's Rust step calls through tch), for docs/performance.md:

    OMP_WAIT_POLICY=PASSIVE $SEVIT_TORCH_PYTHON bench/profile_step_torch.py
"""
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import torch  # noqa: E402

import distl_step_torch as m  # noqa: E402
torch.set_num_threads(2)
embed, depth, heads, patch, g, loc, out_dim, b = m.CONFIGS["tiny16"]
torch.manual_seed(0)
S=m.MultiCropWrapper(m.VisionTransformer(embed,depth,heads,patch,0.1,True),m.DINOHead(embed,out_dim),m.ClassHead(embed))
T=m.MultiCropWrapper(m.VisionTransformer(embed,depth,heads,patch,0.0,True),m.DINOHead(embed,out_dim),m.ClassHead(embed))
T.load_state_dict(S.state_dict())
for p in T.parameters(): p.requires_grad=False
views=[torch.rand(b,3,g,g) for _ in range(2)]+[torch.rand(b,3,loc,loc) for _ in range(8)]
L=m.DINOLoss(out_dim,10); opt=torch.optim.AdamW(m.get_params_groups(S))
def step():
    with torch.no_grad(): td,tc=T(views[:2])
    sd,sc=S(views)
    loss=0.5*L(sd,td)+0.5*0.8*torch.nn.functional.binary_cross_entropy_with_logits(sc[b:2*b],torch.sigmoid(tc[:b]))
    opt.zero_grad(); loss.backward(); m.clip_gradients(S,3.0); opt.step()
    with torch.no_grad():
        for q,k in zip(S.parameters(),T.parameters()): k.mul_(0.9995).add_(0.0005*q)
step()
from torch.profiler import profile, ProfilerActivity
with profile(activities=[ProfilerActivity.CPU]) as prof:
    step()
tot=sum(e.self_cpu_time_total for e in prof.key_averages())
for e in sorted(prof.key_averages(), key=lambda e:-e.self_cpu_time_total)[:18]:
    print(f"{e.key:45s} {e.self_cpu_time_total/1e3:9.1f} ms {100*e.self_cpu_time_total/tot:5.1f}%  n={e.count}")
print("total self", tot/1e3, "ms")
