#!/usr/bin/env python3
"""How close can an int8 (or bf16) forward pass of all-MiniLM-L6-v2 stay to fp32? Simulated in PyTorch
before writing any kernel: every encoder nn.Linear is replaced by fake quantization as a VNNI
kernel would compute it (activations symmetric int8 per row, scale max|x|/127, computed per call;
weights symmetric int8 per output column; products summed exactly, then scaled back, bias in
fp32); and bf16 inputs with fp32 sums, as AVX512_BF16's VDPBF16PS computes. Prints the min / mean cosine to the fp32 vectors over the golden texts, per variant.

Usage: bench/.venv/bin/python bench/int8_fidelity.py [MODEL_DIR]
"""
import json
import pathlib
import sys

import torch
from sentence_transformers import SentenceTransformer

ROOT = pathlib.Path(__file__).resolve().parent.parent
MODEL = sys.argv[1] if len(sys.argv) > 1 else str(ROOT / "models/all-MiniLM-L6-v2")
TEXTS = [c["text"] for c in json.loads((ROOT / "model-server/tests/fixtures/reference.json").read_text())["cases"]]


class FakeInt8Linear(torch.nn.Module):
    def __init__(self, linear: torch.nn.Linear, act_bits: int = 8):
        super().__init__()
        w = linear.weight.detach()
        self.w_scale = w.abs().amax(dim=1, keepdim=True).clamp(min=1e-12) / 127.0
        self.w_q = torch.round(w / self.w_scale).clamp(-127, 127)
        self.bias = linear.bias.detach()
        self.qmax = 2 ** (act_bits - 1) - 1

    def forward(self, x):
        x_scale = x.abs().amax(dim=-1, keepdim=True).clamp(min=1e-12) / self.qmax
        x_q = torch.round(x / x_scale).clamp(-self.qmax, self.qmax)
        y = (x_q.double() @ self.w_q.double().t()).float()
        return y * x_scale * self.w_scale.t() + self.bias


class FakeBf16Linear(torch.nn.Module):
    """Inputs and weights rounded to bf16, products summed in fp32 (what VDPBF16PS computes)."""

    def __init__(self, linear: torch.nn.Linear):
        super().__init__()
        self.w = linear.weight.detach().to(torch.bfloat16).float()
        self.bias = linear.bias.detach()

    def forward(self, x):
        return x.to(torch.bfloat16).float() @ self.w.t() + self.bias


def quantize(model, skip=(), kind=FakeInt8Linear):
    bert = model[0].auto_model
    for layer in bert.encoder.layer:
        for name, parent, attr in (
            ("query", layer.attention.self, "query"),
            ("key", layer.attention.self, "key"),
            ("value", layer.attention.self, "value"),
            ("attention_out", layer.attention.output, "dense"),
            ("intermediate", layer.intermediate, "dense"),
            ("output", layer.output, "dense"),
        ):
            if name not in skip:
                setattr(parent, attr, kind(getattr(parent, attr)))
    return model


def cosines(a, b):
    return torch.nn.functional.cosine_similarity(a, b, dim=1)


def main():
    torch.set_num_threads(2)
    reference = SentenceTransformer(MODEL, device="cpu").encode(TEXTS, convert_to_tensor=True, normalize_embeddings=True)
    for label, skip, kind in (
        ("all six linears int8", (), FakeInt8Linear),
        ("int8, FFN output (1536->384) fp32", ("output",), FakeInt8Linear),
        ("int8, both FFN linears fp32", ("output", "intermediate"), FakeInt8Linear),
        ("all six linears bf16 (fp32 sums)", (), FakeBf16Linear),
    ):
        model = quantize(SentenceTransformer(MODEL, device="cpu"), skip, kind)
        got = model.encode(TEXTS, convert_to_tensor=True, normalize_embeddings=True)
        c = cosines(got, reference)
        print(f"{label:<36} min cosine {c.min():.5f}  mean {c.mean():.5f}")


if __name__ == "__main__":
    main()
