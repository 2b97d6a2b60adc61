"""Plain-PyTorch reference of the sevit network, for the parity tests (tests/torch_parity.rs).

Written for the tests from the DINO/DISTL definitions (ViT with bicubic pos-embed
interpolation, DINO head with weight-normalised last layer, 3-layer ReLU class head); it is
never used at runtime. Exchange with Rust goes through .npz files (numpy only).

    python torch_reference.py forward DIR   # DIR/config.json, weights.npz, inputs.npz -> outputs.npz
    python torch_reference.py pth DIR       # also writes DIR/distl.pth, DIR/dino_backbone.pth,
                                            # DIR/dtypes.npz (reference values of odd tensors)
"""
import argparse
import collections
import json
import math
import sys

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F


class PatchEmbed(nn.Module):
    def __init__(self, patch, dim):
        super().__init__()
        self.patch = patch
        self.proj = nn.Conv2d(3, dim, kernel_size=patch, stride=patch)

    def forward(self, x):
        return self.proj(x).flatten(2).transpose(1, 2)


class Attention(nn.Module):
    def __init__(self, dim, heads, qkv_bias):
        super().__init__()
        self.heads = heads
        self.scale = (dim // heads) ** -0.5
        self.qkv = nn.Linear(dim, dim * 3, bias=qkv_bias)
        self.proj = nn.Linear(dim, dim)

    def forward(self, x):
        b, n, c = x.shape
        qkv = self.qkv(x).reshape(b, n, 3, self.heads, c // self.heads).permute(2, 0, 3, 1, 4)
        q, k, v = qkv[0], qkv[1], qkv[2]
        attn = ((q @ k.transpose(-2, -1)) * self.scale).softmax(dim=-1)
        out = (attn @ v).transpose(1, 2).reshape(b, n, c)
        return self.proj(out), attn


class Mlp(nn.Module):
    def __init__(self, dim, hidden):
        super().__init__()
        self.fc1 = nn.Linear(dim, hidden)
        self.fc2 = nn.Linear(hidden, dim)

    def forward(self, x):
        return self.fc2(F.gelu(self.fc1(x)))


class Block(nn.Module):
    def __init__(self, dim, heads, mlp_ratio, qkv_bias, eps):
        super().__init__()
        self.norm1 = nn.LayerNorm(dim, eps=eps)
        self.attn = Attention(dim, heads, qkv_bias)
        self.norm2 = nn.LayerNorm(dim, eps=eps)
        self.mlp = Mlp(dim, int(dim * mlp_ratio))

    def forward(self, x):
        y, attn = self.attn(self.norm1(x))
        x = x + y
        x = x + self.mlp(self.norm2(x))
        return x, attn


class ViT(nn.Module):
    def __init__(self, c):
        super().__init__()
        d, p = c["embed_dim"], c["patch_size"]
        grid = c["img_size"] // p
        self.patch = p
        self.patch_embed = PatchEmbed(p, d)
        self.cls_token = nn.Parameter(torch.zeros(1, 1, d))
        self.pos_embed = nn.Parameter(torch.zeros(1, grid * grid + 1, d))
        self.blocks = nn.ModuleList(
            [Block(d, c["num_heads"], c["mlp_ratio"], c["qkv_bias"], c["ln_eps"]) for _ in range(c["depth"])]
        )
        self.norm = nn.LayerNorm(d, eps=c["ln_eps"])

    def pos_for(self, x, h, w):
        npatch = x.shape[1] - 1
        n = self.pos_embed.shape[1] - 1
        if npatch == n and h == w:
            return self.pos_embed
        dim = x.shape[-1]
        h0, w0 = h // self.patch + 0.1, w // self.patch + 0.1
        g = int(math.sqrt(n))
        grid = self.pos_embed[:, 1:].reshape(1, g, g, dim).permute(0, 3, 1, 2)
        grid = F.interpolate(grid, scale_factor=(h0 / math.sqrt(n), w0 / math.sqrt(n)), mode="bicubic")
        assert grid.shape[-2] == int(h0) and grid.shape[-1] == int(w0)
        grid = grid.permute(0, 2, 3, 1).reshape(1, -1, dim)
        return torch.cat((self.pos_embed[:, :1], grid), dim=1)

    def tokens(self, x):
        b, _, h, w = x.shape
        t = self.patch_embed(x)
        t = torch.cat((self.cls_token.expand(b, -1, -1), t), dim=1)
        return t + self.pos_for(t, h, w)

    def forward(self, x):
        t = self.tokens(x)
        attn = None
        for blk in self.blocks:
            t, attn = blk(t)
        return self.norm(t)[:, 0], attn


class WeightNormLinear(nn.Module):
    def __init__(self, inp, out):
        super().__init__()
        self.weight_g = nn.Parameter(torch.ones(out, 1))
        self.weight_v = nn.Parameter(torch.zeros(out, inp))

    def forward(self, x):
        w = self.weight_g * self.weight_v / self.weight_v.norm(dim=1, keepdim=True)
        return F.linear(x, w)


class DinoHead(nn.Module):
    def __init__(self, inp, h):
        super().__init__()
        n = max(h["nlayers"], 1)
        if n == 1:
            self.mlp = nn.Linear(inp, h["bottleneck_dim"])
        else:
            layers = [nn.Linear(inp, h["hidden_dim"]), nn.GELU()]
            for _ in range(n - 2):
                layers += [nn.Linear(h["hidden_dim"], h["hidden_dim"]), nn.GELU()]
            layers.append(nn.Linear(h["hidden_dim"], h["bottleneck_dim"]))
            self.mlp = nn.Sequential(*layers)
        self.last_layer = WeightNormLinear(h["bottleneck_dim"], h["out_dim"])

    def forward(self, x):
        x = F.normalize(self.mlp(x), dim=-1, p=2)
        return self.last_layer(x)


class ClsHead(nn.Module):
    def __init__(self, inp, hidden):
        super().__init__()
        self.mlp = nn.Sequential(nn.Linear(inp, hidden), nn.ReLU(), nn.Linear(hidden, hidden), nn.ReLU(), nn.Linear(hidden, 1))

    def forward(self, x):
        return self.mlp(x).squeeze(-1)


class Net(nn.Module):
    def __init__(self, cfg):
        super().__init__()
        self.backbone = ViT(cfg["vit"])
        self.head = DinoHead(cfg["vit"]["embed_dim"], cfg["head"])
        self.cls_head = ClsHead(cfg["vit"]["embed_dim"], cfg["cls_hidden_dim"])


def load(d):
    cfg = json.load(open(f"{d}/config.json"))
    net = Net(cfg)
    weights = np.load(f"{d}/weights.npz")
    sd = collections.OrderedDict((k, torch.from_numpy(weights[k].copy())) for k in weights.files)
    net.load_state_dict(sd, strict=True)
    net.eval()
    return cfg, net, sd


def forward(d):
    cfg, net, sd = load(d)
    inputs = np.load(f"{d}/inputs.npz")
    out = {}
    with torch.no_grad():
        for name in sorted(inputs.files):
            x = torch.from_numpy(inputs[name].copy())
            feat, attn = net.backbone(x)
            out[f"{name}_feat"] = feat.numpy()
            out[f"{name}_dino"] = net.head(feat).numpy()
            out[f"{name}_cls"] = net.cls_head(feat).numpy()
            out[f"{name}_attn"] = attn.numpy()
    np.savez(f"{d}/outputs.npz", **out)
    return sd


def pth(d):
    sd = forward(d)
    student = collections.OrderedDict((f"module.{k}", v.clone()) for k, v in sd.items())
    teacher = collections.OrderedDict((k, v * 2) for k, v in sd.items())
    param = nn.Parameter(torch.ones(3))
    opt = torch.optim.AdamW([param], lr=1e-3)
    param.sum().backward()
    opt.step()
    big = torch.arange(24, dtype=torch.float32)
    odd = collections.OrderedDict(
        f16=torch.linspace(-2, 2, 7).half(),
        bf16=torch.linspace(-3, 3, 5).bfloat16(),
        f64=torch.linspace(0, 1, 4, dtype=torch.float64),
        transposed=big.reshape(4, 6).t(),
        view=big[5:11].reshape(2, 3),
        scalar=torch.tensor(3.5),
    )
    args = argparse.Namespace(arch="vit_micro", patch_size=8, out_dim=128, norm_last_layer=True, lr=5e-5,
                              epochs=5, momentum_teacher=0.9995, data_path="/nowhere", use_fp16=True,
                              global_crops_scale=(0.75, 1.0), nested={"a": [1, 2]})
    save = {
        "student": student,
        "teacher": teacher,
        "optimizer": opt.state_dict(),
        "epoch": 3,
        "args": args,
        "dino_loss": {"center": torch.zeros(1, 128)},
        "fp16_scaler": None,
        "odd": odd,
    }
    torch.save(save, f"{d}/distl.pth")
    backbone = collections.OrderedDict((k[len("backbone."):], v) for k, v in sd.items() if k.startswith("backbone."))
    torch.save(backbone, f"{d}/dino_backbone.pth")
    np.savez(f"{d}/dtypes.npz", **{k: np.ascontiguousarray(v.float().numpy()) for k, v in odd.items()})


if __name__ == "__main__":
    torch.set_num_threads(1)
    {"forward": forward, "pth": pth}[sys.argv[1]](sys.argv[2])
