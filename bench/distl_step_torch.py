#!/usr/bin/env python3
"""Plain PyTorch eager implementation of one DISTL training step, for `just bench`.

The comparison baseline of `crates/sevit-distill/benches/distl_step.rs`: the same network,
the same views, the same losses and the same update, written as the DINO/DISTL reference code
writes them (python loops, per-parameter clipping with a host read per tensor, the for-loop
AdamW of `torch.optim`, per-parameter EMA, the 18-pair DINO loss). `--attn sdpa` switches the
attention to `F.scaled_dot_product_attention` (as sevit does) to separate that one change.

Prints one JSON line with the same fields as the Rust bench. Benchmarks only: never imported
by the runtime.

    $SEVIT_TORCH_PYTHON bench/distl_step_torch.py --config tiny16 --mode step --iters 5
"""

import argparse
import json
import math
import sys
import time

import torch
import torch.nn as nn
import torch.nn.functional as F

CONFIGS = {
    # name: (embed, depth, heads, patch, global, local, out_dim, batch)
    "tiny16": (192, 12, 3, 16, 128, 64, 4096, 16),
    "tiny16-65k": (192, 12, 3, 16, 128, 64, 65536, 16),
    "small8": (384, 12, 6, 8, 256, 128, 65536, 4),
    "micro": (32, 2, 2, 8, 32, 16, 128, 4),
}
N_GLOBAL, N_LOCAL = 2, 8
LAMBDA, CLIP, EPOCH, EPOCHS = 0.5, 3.0, 1, 5


def proc_status_kb(key):
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith(key):
                    return int(line.split()[1])
    except OSError:
        pass
    return 0


def gpu_memory_used_mib(dev):
    """GPU memory in use on `dev` (nvidia-smi), as the Rust bench reports it; None without it."""
    import subprocess

    try:
        q = ["nvidia-smi", "--query-gpu=memory.used", "--format=csv,noheader,nounits", "-i", str(dev.index or 0)]
        return float(subprocess.run(q, capture_output=True, text=True, check=True).stdout.strip())
    except (OSError, ValueError, subprocess.CalledProcessError):
        return None


# ---- the network, as DINO's vision_transformer.py ------------------------------------------


def drop_path(x, drop_prob, training):
    if drop_prob == 0.0 or not training:
        return x
    keep_prob = 1 - drop_prob
    shape = (x.shape[0],) + (1,) * (x.ndim - 1)
    random_tensor = keep_prob + torch.rand(shape, dtype=x.dtype, device=x.device)
    random_tensor.floor_()
    return x.div(keep_prob) * random_tensor


class Mlp(nn.Module):
    def __init__(self, dim, hidden):
        super().__init__()
        self.fc1 = nn.Linear(dim, hidden)
        self.act = nn.GELU()
        self.fc2 = nn.Linear(hidden, dim)

    def forward(self, x):
        return self.fc2(self.act(self.fc1(x)))


class Attention(nn.Module):
    def __init__(self, dim, heads, sdpa):
        super().__init__()
        self.num_heads = heads
        self.scale = (dim // heads) ** -0.5
        self.qkv = nn.Linear(dim, dim * 3, bias=True)
        self.proj = nn.Linear(dim, dim)
        self.sdpa = sdpa

    def forward(self, x):
        B, N, C = x.shape
        qkv = self.qkv(x).reshape(B, N, 3, self.num_heads, C // self.num_heads).permute(2, 0, 3, 1, 4)
        q, k, v = qkv[0], qkv[1], qkv[2]
        if self.sdpa:
            x = F.scaled_dot_product_attention(q, k, v, scale=self.scale)
        else:
            attn = (q @ k.transpose(-2, -1)) * self.scale
            attn = attn.softmax(dim=-1)
            x = attn @ v
        x = x.transpose(1, 2).reshape(B, N, C)
        return self.proj(x)


class Block(nn.Module):
    def __init__(self, dim, heads, dpr, sdpa):
        super().__init__()
        self.norm1 = nn.LayerNorm(dim, eps=1e-6)
        self.attn = Attention(dim, heads, sdpa)
        self.drop_path = dpr
        self.norm2 = nn.LayerNorm(dim, eps=1e-6)
        self.mlp = Mlp(dim, 4 * dim)

    def forward(self, x):
        x = x + drop_path(self.attn(self.norm1(x)), self.drop_path, self.training)
        x = x + drop_path(self.mlp(self.norm2(x)), self.drop_path, self.training)
        return x


class VisionTransformer(nn.Module):
    def __init__(self, embed, depth, heads, patch, drop_path_rate, sdpa, img_size=224):
        super().__init__()
        self.patch = patch
        self.patch_embed = nn.Conv2d(3, embed, kernel_size=patch, stride=patch)
        n = (img_size // patch) ** 2
        self.cls_token = nn.Parameter(torch.zeros(1, 1, embed))
        self.pos_embed = nn.Parameter(torch.zeros(1, n + 1, embed))
        dpr = [x.item() for x in torch.linspace(0, drop_path_rate, depth)]
        self.blocks = nn.ModuleList([Block(embed, heads, dpr[i], sdpa) for i in range(depth)])
        self.norm = nn.LayerNorm(embed, eps=1e-6)
        nn.init.trunc_normal_(self.pos_embed, std=0.02)
        nn.init.trunc_normal_(self.cls_token, std=0.02)
        self.apply(_init_weights)

    def interpolate_pos_encoding(self, x, w, h):
        npatch = x.shape[1] - 1
        N = self.pos_embed.shape[1] - 1
        if npatch == N and w == h:
            return self.pos_embed
        class_pos_embed = self.pos_embed[:, 0]
        patch_pos_embed = self.pos_embed[:, 1:]
        dim = x.shape[-1]
        w0 = w // self.patch
        h0 = h // self.patch
        w0, h0 = w0 + 0.1, h0 + 0.1
        patch_pos_embed = F.interpolate(
            patch_pos_embed.reshape(1, int(math.sqrt(N)), int(math.sqrt(N)), dim).permute(0, 3, 1, 2),
            scale_factor=(w0 / math.sqrt(N), h0 / math.sqrt(N)),
            mode="bicubic",
        )
        patch_pos_embed = patch_pos_embed.permute(0, 2, 3, 1).view(1, -1, dim)
        return torch.cat((class_pos_embed.unsqueeze(0), patch_pos_embed), dim=1)

    def forward(self, x):
        B, _, w, h = x.shape
        t = self.patch_embed(x).flatten(2).transpose(1, 2)
        t = torch.cat((self.cls_token.expand(B, -1, -1), t), dim=1)
        t = t + self.interpolate_pos_encoding(t, w, h)
        for blk in self.blocks:
            t = blk(t)
        t = self.norm(t)
        return t[:, 0]


def _init_weights(m):
    if isinstance(m, nn.Linear):
        nn.init.trunc_normal_(m.weight, std=0.02)
        if m.bias is not None:
            nn.init.constant_(m.bias, 0)
    elif isinstance(m, nn.LayerNorm):
        nn.init.constant_(m.bias, 0)
        nn.init.constant_(m.weight, 1.0)


class DINOHead(nn.Module):
    def __init__(self, in_dim, out_dim, hidden=2048, bottleneck=256):
        super().__init__()
        self.mlp = nn.Sequential(
            nn.Linear(in_dim, hidden), nn.GELU(), nn.Linear(hidden, hidden), nn.GELU(), nn.Linear(hidden, bottleneck)
        )
        self.apply(_init_weights)
        # nn.utils.weight_norm(nn.Linear(bottleneck, out_dim, bias=False)) with weight_g fixed to 1
        # (norm_last_layer): the same computation, torch._weight_norm(v, g, 0), without the
        # deprecated hook.
        self.weight_v = nn.Parameter(torch.empty(out_dim, bottleneck).uniform_(-(bottleneck**-0.5), bottleneck**-0.5))
        self.weight_g = nn.Parameter(torch.ones(out_dim, 1), requires_grad=False)

    def forward(self, x):
        x = self.mlp(x)
        x = F.normalize(x, dim=-1, p=2)
        return F.linear(x, torch._weight_norm(self.weight_v, self.weight_g, 0))


class ClassHead(nn.Module):
    def __init__(self, in_dim, hidden=256):
        super().__init__()
        self.mlp = nn.Sequential(nn.Linear(in_dim, hidden), nn.ReLU(), nn.Linear(hidden, hidden), nn.ReLU(), nn.Linear(hidden, 1))

    def forward(self, x):
        return self.mlp(x).squeeze(-1)


class MultiCropWrapper(nn.Module):
    """DINO's MultiCropWrapper with DISTL's class head on the global views."""

    def __init__(self, backbone, head, cls_head):
        super().__init__()
        self.backbone, self.head, self.cls_head = backbone, head, cls_head

    def forward(self, x, n_global=N_GLOBAL):
        idx_crops = torch.cumsum(
            torch.unique_consecutive(torch.tensor([inp.shape[-1] for inp in x]), return_counts=True)[1], 0
        )
        start_idx, output = 0, torch.empty(0, device=x[0].device)
        for end_idx in idx_crops:
            _out = self.backbone(torch.cat(x[start_idx:end_idx]))
            output = torch.cat((output, _out))
            start_idx = end_idx
        b = x[0].shape[0]
        return self.head(output), self.cls_head(output[: n_global * b])


# ---- losses, clipping, EMA, as DINO's main_dino.py / utils.py -------------------------------


class DINOLoss(nn.Module):
    def __init__(self, out_dim, ncrops, teacher_temp=0.04, student_temp=0.1, center_momentum=0.9):
        super().__init__()
        self.student_temp, self.center_momentum, self.ncrops = student_temp, center_momentum, ncrops
        self.teacher_temp = teacher_temp
        self.register_buffer("center", torch.zeros(1, out_dim))

    def forward(self, student_output, teacher_output):
        student_out = (student_output / self.student_temp).chunk(self.ncrops)
        teacher_out = F.softmax((teacher_output - self.center) / self.teacher_temp, dim=-1)
        teacher_out = teacher_out.detach().chunk(2)
        total_loss, n_loss_terms = 0, 0
        for iq, q in enumerate(teacher_out):
            for v in range(len(student_out)):
                if v == iq:
                    continue
                loss = torch.sum(-q * F.log_softmax(student_out[v], dim=-1), dim=-1)
                total_loss += loss.mean()
                n_loss_terms += 1
        total_loss /= n_loss_terms
        self.update_center(teacher_output)
        return total_loss

    @torch.no_grad()
    def update_center(self, teacher_output):
        batch_center = torch.sum(teacher_output, dim=0, keepdim=True) / len(teacher_output)
        self.center = self.center * self.center_momentum + batch_center * (1 - self.center_momentum)


def clip_gradients(model, clip):
    for p in model.parameters():
        if p.grad is not None:
            param_norm = p.grad.data.norm(2)
            clip_coef = clip / (param_norm + 1e-6)
            if clip_coef < 1:
                p.grad.data.mul_(clip_coef)


def get_params_groups(model):
    regularized, not_regularized = [], []
    for name, param in model.named_parameters():
        if not param.requires_grad:
            continue
        if name.endswith(".bias") or len(param.shape) == 1:
            not_regularized.append(param)
        else:
            regularized.append(param)
    return [{"params": regularized}, {"params": not_regularized, "weight_decay": 0.0}]


class Timer:
    """Wall-clock phase timers; on CUDA each phase ends with a device synchronisation, so the
    time is the phase's kernels and not only their launches."""

    def __init__(self, sync=lambda: None):
        self.order, self.cur, self.all, self.sync = [], {}, {}, sync

    def time(self, name, f):
        t = time.perf_counter()
        r = f()
        self.sync()
        if name not in self.order:
            self.order.append(name)
        self.cur[name] = self.cur.get(name, 0.0) + time.perf_counter() - t
        return r

    def end_iter(self, keep):
        if keep:
            for k, v in self.cur.items():
                self.all.setdefault(k, []).append(v)
        self.cur = {}


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--config", default="tiny16", choices=sorted(CONFIGS))
    ap.add_argument("--mode", default="step", choices=["step", "correction", "eval", "matmul"])
    ap.add_argument("--attn", default="explicit", choices=["explicit", "sdpa"])
    ap.add_argument(
        "--compile",
        action="store_true",
        help="torch.compile the student and the teacher (the step's forward and backward through "
        "Inductor); the warm-up iterations absorb the compilation, whose time is reported as compile_s",
    )
    ap.add_argument("--iters", type=int, default=5)
    ap.add_argument("--warmup", type=int, default=1)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--matmul-n", type=int, default=2048)
    ap.add_argument("--eval-batch", type=int, default=32)
    ap.add_argument("--device", default="cpu", help="cpu, cuda or cuda:N")
    ap.add_argument(
        "--precision",
        default="fp32",
        choices=["fp32", "bf16"],
        help="bf16: forward passes under torch.autocast(bfloat16), losses in f32 (as sevit's precision = \"bf16\")",
    )
    a = ap.parse_args()
    bf16 = a.precision == "bf16"
    dev = torch.device(a.device)
    if dev.type == "cuda" and not torch.cuda.is_available():
        sys.exit(f"--device {a.device}: this torch sees no CUDA device")
    cuda = dev.type == "cuda"

    def autocast():
        return torch.autocast(dev.type, dtype=torch.bfloat16, enabled=bf16)

    def sync():
        if cuda:
            torch.cuda.synchronize(dev)

    torch.set_num_threads(a.threads)
    torch.set_num_interop_threads(1)
    t_start = time.perf_counter()
    times, cpu, losses, timer, extra = [], [], [], Timer(sync), {}
    images_per_iter = 0.0

    if a.mode == "matmul":
        n = a.matmul_n
        dtype = torch.bfloat16 if bf16 else torch.float32  # the step's own matrix-product rate
        x, y = torch.randn(n, n, dtype=dtype, device=dev), torch.randn(n, n, dtype=dtype, device=dev)
        for i in range(a.warmup + a.iters):
            t = time.perf_counter()
            z = x @ y
            z[0, 0].item()
            if i >= a.warmup:
                times.append(time.perf_counter() - t)
        extra.update(flop_per_iter=2.0 * n**3, matmul_n=n)
    else:
        embed, depth, heads, patch, g, loc, out_dim, b = CONFIGS[a.config]
        sdpa = a.attn == "sdpa"
        cls_hidden = 32 if a.config == "micro" else 256
        torch.manual_seed(0)
        img = 32 if a.config == "micro" else 224
        head = (64, 16) if a.config == "micro" else (2048, 256)  # hidden, bottleneck
        student = MultiCropWrapper(
            VisionTransformer(embed, depth, heads, patch, 0.1, sdpa, img), DINOHead(embed, out_dim, *head), ClassHead(embed, cls_hidden)
        )
        teacher = MultiCropWrapper(
            VisionTransformer(embed, depth, heads, patch, 0.0, sdpa, img), DINOHead(embed, out_dim, *head), ClassHead(embed, cls_hidden)
        )
        student.to(dev)
        teacher.to(dev)
        teacher.load_state_dict(student.state_dict())
        for p in teacher.parameters():
            p.requires_grad = False
        student.train()
        teacher.train()  # DINO keeps the teacher in train mode; it has no dropout/drop-path
        views = [torch.rand(b, 3, g, g, device=dev) for _ in range(N_GLOBAL)] + [
            torch.rand(b, 3, loc, loc, device=dev) for _ in range(N_LOCAL)
        ]
        labels = (torch.rand(b, device=dev) > 0.5).float()
        if a.compile:
            if a.warmup < 1:
                sys.exit("--compile needs --warmup >= 1: the first iteration compiles")
            student, teacher = torch.compile(student), torch.compile(teacher)
        dino_loss = DINOLoss(out_dim, N_GLOBAL + N_LOCAL).to(dev)
        optimizer = torch.optim.AdamW(get_params_groups(student))
        lr, wd, mom = 5e-5 * b / 16.0, 0.01, 0.9995
        alpha = 2.0 * (EPOCH + 1) / EPOCHS
        extra["rss_after_setup_kb"] = proc_status_kb("VmRSS:")
        extra["params"] = sum(p.numel() for p in student.parameters())
        extra["attn"] = a.attn
        if a.mode in ("step", "correction"):
            correction = a.mode == "correction"
            images_per_iter = float(b)
            s_params, t_params = list(student.parameters()), list(teacher.parameters())
            for i in range(a.warmup + a.iters):
                torch.manual_seed(i)
                t0, c0 = time.perf_counter(), time.process_time()
                for k, pg in enumerate(optimizer.param_groups):
                    pg["lr"] = lr
                    if k == 0:
                        pg["weight_decay"] = wd

                def teacher_fwd():
                    with torch.no_grad(), autocast():
                        return teacher(views[:N_GLOBAL])

                def student_fwd():
                    with autocast():
                        return student(views)

                t_dino, t_cls = timer.time("teacher_fwd", teacher_fwd)
                s_dino, s_cls = timer.time("student_fwd", student_fwd)

                def loss_fn():
                    # in f32, as sevit's losses (CPU autocast would keep log_softmax in bf16)
                    s_dino_f, t_dino_f, s_cls_f, t_cls_f = (t.float() for t in (s_dino, t_dino, s_cls, t_cls))
                    d = dino_loss(s_dino_f, t_dino_f)
                    s_logit = s_cls_f[b : 2 * b]
                    if correction:
                        return LAMBDA * d + (1 - LAMBDA) * F.binary_cross_entropy_with_logits(s_logit, labels)
                    st = F.binary_cross_entropy_with_logits(s_logit, torch.sigmoid(t_cls_f[:b]))
                    return LAMBDA * d + (1 - LAMBDA) * alpha * st

                loss = timer.time("loss", loss_fn)

                def backward():
                    optimizer.zero_grad()
                    loss.backward()

                timer.time("backward", backward)
                timer.time("clip", lambda: clip_gradients(student, CLIP))
                timer.time("optimizer", optimizer.step)
                if not correction:

                    def ema():
                        with torch.no_grad():
                            for param_q, param_k in zip(s_params, t_params):
                                param_k.data.mul_(mom).add_((1 - mom) * param_q.detach().data)

                    timer.time("ema", ema)
                v = timer.time("host_read", loss.item)
                if not math.isfinite(v):
                    sys.exit(f"non-finite loss {v} at iteration {i}")
                losses.append(v)
                dt, dc = time.perf_counter() - t0, time.process_time() - c0
                if i == 0 and a.compile:
                    extra["compile_s"] = dt
                keep = i >= a.warmup
                timer.end_iter(keep)
                if keep:
                    times.append(dt)
                    cpu.append(dc)
            extra["adamw_foreach"] = optimizer.defaults.get("foreach")
            extra["adamw_fused"] = optimizer.defaults.get("fused")
        elif a.mode == "eval":
            teacher.eval()
            x = torch.rand(a.eval_batch, 3, g, g, device=dev)
            images_per_iter = float(a.eval_batch)
            for i in range(a.warmup + a.iters):
                t0 = time.perf_counter()
                with torch.no_grad(), autocast():
                    p = torch.sigmoid(teacher.cls_head(teacher.backbone(x)).float())
                p[0].item()
                if i >= a.warmup:
                    times.append(time.perf_counter() - t0)
            extra["eval_batch"] = a.eval_batch
        extra.update(batch=b, **{"global": g}, local=loc, out_dim=out_dim)

    out = {
        "impl": "torch",
        "config": a.config,
        "mode": a.mode,
        "variant": a.attn + ("+compile" if a.compile else ""),
        "precision": a.precision,
        "threads": a.threads,
        "warmup": a.warmup,
        "times_s": times,
        "cpu_s": cpu,
        "losses": losses,
        "images_per_iter": images_per_iter,
        "phases_s": {k: timer.all.get(k, []) for k in timer.order},
        "vm_hwm_kb": proc_status_kb("VmHWM:"),
        "wall_s": time.perf_counter() - t_start,
        "torch_threads": torch.get_num_threads(),
        "torch_version": torch.__version__,
        "device": str(dev),
    }
    if cuda:
        out["gpu_memory_used_mib"] = gpu_memory_used_mib(dev)
        out["cuda_max_allocated_mib"] = torch.cuda.max_memory_allocated(dev) / 2**20
        out["cuda_max_reserved_mib"] = torch.cuda.max_memory_reserved(dev) / 2**20
        out["gpu_name"] = torch.cuda.get_device_name(dev)
    out.update(extra)
    print(json.dumps(out))


if __name__ == "__main__":
    main()
