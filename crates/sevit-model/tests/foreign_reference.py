"""Writes small random ViTs of other implementations for sevit's import parity tests.

Usage: foreign_reference.py OUT_DIR

Builds, with the real packages, a timm VisionTransformer (without and with LayerScale), a
Hugging Face transformers ViTForImageClassification and a Dinov2Model, perturbs every
parameter so that no weight keeps its default value, saves each in the form people have it
(torch.save state dict, .safetensors, save_pretrained folder) and writes the CLS features
after the final norm for fixed random inputs to outputs.npz, with the inputs in inputs.npz.
"""
import os
import sys

import numpy as np
import safetensors.torch
import timm
import torch
import transformers

out = sys.argv[1]
torch.manual_seed(0)
np.random.seed(0)


def perturb(model):
    with torch.no_grad():
        for p in model.parameters():
            p.add_(torch.randn_like(p) * 0.1)
    return model.eval()


inputs, outputs = {}, {}


def record(name, fn, size):
    x = torch.rand(2, 3, size, size)
    inputs[name] = x.numpy()
    with torch.no_grad():
        outputs[name] = fn(x).numpy()


# timm: DINO's names, a classifier head, optionally LayerScale (ls1.gamma / ls2.gamma)
for tag, init_values in [("timm", None), ("timm_ls", 0.5)]:
    m = perturb(timm.models.vision_transformer.VisionTransformer(
        img_size=32, patch_size=8, embed_dim=48, depth=2, num_heads=3, num_classes=3,
        init_values=init_values))
    record(tag, lambda x, m=m: m.forward_features(x)[:, 0], 32)
    if init_values is None:
        torch.save(m.state_dict(), os.path.join(out, "timm.pth"))
    else:
        safetensors.torch.save_file(m.state_dict(), os.path.join(out, "timm_ls.safetensors"))

# Hugging Face ViT (layer_norm_eps 1e-12), as save_pretrained writes it: vit.* + classifier
cfg = transformers.ViTConfig(hidden_size=48, num_hidden_layers=2, num_attention_heads=4,
                             intermediate_size=192, image_size=32, patch_size=8, num_labels=2)
m = perturb(transformers.ViTForImageClassification(cfg))
record("hf_vit", lambda x: m.vit(pixel_values=x).last_hidden_state[:, 0], 32)
m.save_pretrained(os.path.join(out, "hf_vit"))
# the same weights as a bare state dict in transformers' own module names, no config.json
torch.save(m.state_dict(), os.path.join(out, "hf_vit_state.pth"))

# Hugging Face DINOv2 (LayerScale, patch 14, the layout of RAD-DINO)
cfg = transformers.Dinov2Config(hidden_size=48, num_hidden_layers=2, num_attention_heads=4,
                                mlp_ratio=4, image_size=28, patch_size=14, layerscale_value=0.5)
m = perturb(transformers.Dinov2Model(cfg))
record("hf_dinov2", lambda x: m(pixel_values=x).last_hidden_state[:, 0], 28)
m.save_pretrained(os.path.join(out, "hf_dinov2"))

np.savez(os.path.join(out, "inputs.npz"), **inputs)
np.savez(os.path.join(out, "outputs.npz"), **outputs)
print("timm", timm.__version__, "transformers", transformers.__version__, "torch", torch.__version__)
