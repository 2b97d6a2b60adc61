#!/usr/bin/env python3
"""Reference throughput of the DISTL multi-crop views with torchvision + Pillow.

Same work as `cargo bench -p sevit-data --bench augment`: decode one 8-bit grayscale PNG, then
global view 1 (the image resized to 256), global view 2 (RandomResizedCrop 256 scale 0.75-1.0
bicubic, flip 0.5, rotation +-15, autocontrast 0.3, equalize 0.3, PIL GaussianBlur 0.3 with
radius U(0.1, 2.0)) and 8 local views (128 px, scale 0.2-0.6, p = 0.5 for autocontrast /
equalize / blur), each made a [3, H, W] float tensor; batches of 32 from a DataLoader with 2
worker processes. Images: ../shared/data/kermany_pediatric_224src (first 256), or synthetic
phantoms written by `sevit synth` if absent (pass --images DIR).

Run with the project's torch Python:
    $SEVIT_TORCH_PYTHON bench/torchvision_augment.py
It installs torchvision==0.28.0 (the release that requires torch 2.13.0) and pillow into that
interpreter when missing. Writes target/bench/augment_torchvision.json (relative to the
workspace root) and prints it.
"""
import argparse
import glob
import json
import os
import random
import statistics
import subprocess
import sys
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def ensure_deps():
    try:
        import torchvision  # noqa: F401
        import PIL  # noqa: F401
    except ImportError:
        subprocess.check_call([sys.executable, "-m", "pip", "install", "--quiet", "torchvision==0.28.0", "pillow"])


ensure_deps()

import torch  # noqa: E402
import torchvision  # noqa: E402
from PIL import Image, ImageFilter  # noqa: E402
from torchvision import transforms as T  # noqa: E402


class GaussianBlur:
    """DINO / DISTL utils.GaussianBlur: PIL GaussianBlur with a random radius, probability p."""

    def __init__(self, p, radius_min=0.1, radius_max=2.0):
        self.prob, self.radius_min, self.radius_max = p, radius_min, radius_max

    def __call__(self, img):
        if random.random() <= self.prob:
            return img.filter(ImageFilter.GaussianBlur(radius=random.uniform(self.radius_min, self.radius_max)))
        return img


def view(size, scale, p):
    return T.Compose([
        T.RandomResizedCrop(size, scale=scale, interpolation=T.InterpolationMode.BICUBIC),
        T.RandomHorizontalFlip(p=0.5),
        T.RandomRotation(15),
        T.RandomAutocontrast(p=p),
        T.RandomEqualize(p=p),
        GaussianBlur(p),
    ])


class MultiCrop:
    def __init__(self):
        self.g1 = T.Resize((256, 256))
        self.g2 = view(256, (0.75, 1.0), 0.3)
        self.local = view(128, (0.2, 0.6), 0.5)
        self.to_tensor = T.ToTensor()

    def __call__(self, img):
        views = [self.g1(img), self.g2(img)] + [self.local(img) for _ in range(8)]
        return [self.to_tensor(v).expand(3, -1, -1) for v in views]


class Files(torch.utils.data.Dataset):
    def __init__(self, files):
        self.files, self.tf = files, MultiCrop()

    def __len__(self):
        return len(self.files)

    def __getitem__(self, i):
        img = Image.open(self.files[i]).convert("L")
        return self.tf(img)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--images", default=os.path.join(ROOT, "..", "shared", "data", "kermany_pediatric_224src", "images"))
    ap.add_argument("--n", type=int, default=256)
    ap.add_argument("--runs", type=int, default=5)
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--batch", type=int, default=32)
    args = ap.parse_args()
    files = sorted(glob.glob(os.path.join(args.images, "*.png")))[: args.n]
    if not files:
        sys.exit(f"no PNG images in {args.images}; write some with `sevit synth --out DIR --n 256` and pass --images DIR/images")
    torch.set_num_threads(1)
    loader = torch.utils.data.DataLoader(Files(files), batch_size=args.batch, num_workers=args.workers,
                                         persistent_workers=True, shuffle=False)

    def one_pass():
        t0 = time.perf_counter()
        n = 0
        for batch in loader:
            n += batch[0].shape[0]
        return n / (time.perf_counter() - t0)

    one_pass()  # warm-up (worker start-up, file cache)
    rates = [one_pass() for _ in range(args.runs)]
    out = {
        "bench": "multi-crop augmentation, torchvision + Pillow DataLoader",
        "images_per_s_median": statistics.median(rates),
        "images_per_s_min": min(rates),
        "images_per_s_max": max(rates),
        "runs": args.runs,
        "n_images": len(files),
        "images": os.path.relpath(args.images, ROOT),
        "workers": args.workers,
        "batch_size": args.batch,
        "views": "2x256 + 8x128",
        "torch": torch.__version__,
        "torchvision": torchvision.__version__,
        "pillow": Image.__version__,
        "cpu_count": os.cpu_count(),
    }
    path = os.path.join(ROOT, "target", "bench", "augment_torchvision.json")
    os.makedirs(os.path.dirname(path), exist_ok=True)
    tmp = path + ".tmp"
    with open(tmp, "w") as f:
        json.dump(out, f, indent=2)
        f.write("\n")
    os.replace(tmp, path)
    print(json.dumps(out, indent=2))


if __name__ == "__main__":
    main()
