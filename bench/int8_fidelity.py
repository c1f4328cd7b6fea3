#!/usr/bin/env python3
"""How close can an int8 (or bf16) forward pass of all-MiniLM-L6-v2 stay to fp32? Simulated in PyTorch
before writing any kernel. Every encoder nn.Linear (or the ones a variant names) is replaced by fake
quantization as a VNNI kernel would compute it: weights symmetric int8 per output column;
activations int8 per row (per token), symmetric (scale max|x|/127) or asymmetric u8 with a zero
point (what VPDPBUSD's u8 x s8 takes), per whole row or per group of K; optionally with
SmoothQuant per-channel scales or with the largest-magnitude input channels ("outliers", found on
a calibration corpus) kept in fp32 (LLM.int8); products summed exactly, scaled back, bias in fp32.
And bf16 inputs with fp32 sums, as AVX512_BF16's VDPBF16PS computes. Calibration uses model-server's
built-in corpus (model-server/src/backend/calibration.txt), never the golden texts the cosines are measured on. Prints min / mean cosine to the
fp32 vectors over the golden texts, per variant.

Usage: bench/.venv/bin/python bench/int8_fidelity.py [MODEL_DIR [LABEL_SUBSTRING]]
"""
import json
import pathlib
import sys

import torch
from sentence_transformers import SentenceTransformer

ROOT = pathlib.Path(__file__).resolve().parent.parent

MODEL = sys.argv[1] if len(sys.argv) > 1 else str(ROOT / "models/all-MiniLM-L6-v2")
TEXTS = [c["text"] for c in json.loads((ROOT / "model-server/tests/fixtures/reference.json").read_text())["cases"]]
NAMES = ("query", "key", "value", "attention_out", "intermediate", "output")


def linears(model):
    """(layer index, name, parent module, attribute) of each encoder linear."""
    for index, layer in enumerate(model[0].auto_model.encoder.layer):
        yield index, "query", layer.attention.self, "query"
        yield index, "key", layer.attention.self, "key"
        yield index, "value", layer.attention.self, "value"
        yield index, "attention_out", layer.attention.output, "dense"
        yield index, "intermediate", layer.intermediate, "dense"
        yield index, "output", layer.output, "dense"


def calibrate(model, texts):
    """Max |x| per input channel of every linear, over `texts`."""
    stats, hooks = {}, []
    for index, name, parent, attr in linears(model):
        def hook(_module, inputs, _output, key=(index, name)):
            x = inputs[0].detach().reshape(-1, inputs[0].shape[-1]).abs().amax(0)
            stats[key] = torch.maximum(stats.get(key, x), x)
        hooks.append(getattr(parent, attr).register_forward_hook(hook))
    model.encode(texts, batch_size=32)
    for h in hooks:
        h.remove()
    return stats


class FakeInt8Linear(torch.nn.Module):
    def __init__(self, linear, channel_max=None, smooth=None, outliers=0, group=None, asym=False, act_bits=8, w_group=None):
        super().__init__()
        w = linear.weight.detach().clone()
        self.bias = linear.bias.detach()
        self.smooth = None
        if smooth is not None:
            s = channel_max.clamp(min=1e-5) ** smooth / w.abs().amax(0).clamp(min=1e-5) ** (1 - smooth)
            self.smooth, w = s, w * s
        self.outliers = None
        if outliers:
            self.outliers = channel_max.topk(outliers).indices
            self.w_outliers = w[:, self.outliers].clone()
            w[:, self.outliers] = 0
        # One weight scale per output column, or per column and group of `w_group` along K.
        wg = w_group or w.shape[1]
        self.w_scale = w.reshape(w.shape[0], -1, wg).abs().amax(-1, keepdim=True).clamp(min=1e-12) / 127.0
        self.w_q = torch.round(w.reshape(w.shape[0], -1, wg) / self.w_scale).clamp(-127, 127)
        self.w_q = (self.w_q * self.w_scale).reshape(w.shape)  # dequantized: exact in double sums
        self.w_scale = torch.ones(w.shape[0], 1)
        self.group, self.asym = group, asym
        # 8: u8/s8 activations (VPDPBUSD); 16: s16 activations against the same int8 weights
        # widened to s16 (VPDPWSSD, two products per lane instead of four).
        self.levels = 127 if act_bits == 8 else 32767

    def forward(self, x):
        if self.smooth is not None:
            x = x / self.smooth
        y = self.bias
        if self.outliers is not None:
            y = y + x[..., self.outliers] @ self.w_outliers.t()
            x = x.clone()
            x[..., self.outliers] = 0
        k = x.shape[-1]
        group = self.group or k
        for k0 in range(0, k, group):
            xs = x[..., k0:k0 + group]
            if self.asym:
                lo, hi = xs.amin(-1, keepdim=True), xs.amax(-1, keepdim=True)
                scale = ((hi - lo) / 255).clamp(min=1e-12)
                zero = torch.round(-lo / scale)
                x_q = (torch.round(xs / scale) + zero).clamp(0, 255) - zero
            else:
                scale = xs.abs().amax(-1, keepdim=True).clamp(min=1e-12) / self.levels
                x_q = torch.round(xs / scale).clamp(-self.levels, self.levels)
            y = y + (x_q.double() @ self.w_q[:, k0:k0 + group].double().t()).float() * scale * self.w_scale.t()
        return y


class FakeBf16Linear(torch.nn.Module):
    """Inputs and weights rounded to bf16, products summed in fp32 (what VDPBF16PS computes)."""

    def __init__(self, linear, **_):
        super().__init__()
        self.w = linear.weight.detach().to(torch.bfloat16).float()
        self.bias = linear.bias.detach()

    def forward(self, x):
        return x.to(torch.bfloat16).float() @ self.w.t() + self.bias


ALL_BUT_VALUE = tuple(n for n in NAMES if n != "value")
VARIANTS = [
    # (label, which linears, kind, options)
    ("int8 sym per row, all six linears", NAMES, FakeInt8Linear, {}),
    ("  the same, only `value`", ("value",), FakeInt8Linear, {}),
    ("  the same, only `intermediate`", ("intermediate",), FakeInt8Linear, {}),
    ("  the same, only `output`", ("output",), FakeInt8Linear, {}),
    ("  the same, only query+key+attention_out", ("query", "key", "attention_out"), FakeInt8Linear, {}),
    ("int8, FFN output (1536->384) fp32", ALL_BUT_VALUE[:-1] + ("value",), FakeInt8Linear, {}),
    ("asym u8 per row", NAMES, FakeInt8Linear, {"asym": True}),
    ("SmoothQuant alpha 0.5", NAMES, FakeInt8Linear, {"smooth": 0.5}),
    ("SmoothQuant alpha 0.7", NAMES, FakeInt8Linear, {"smooth": 0.7}),
    ("sym, groups of 64 along K", NAMES, FakeInt8Linear, {"group": 64}),
    ("asym, groups of 64 along K", NAMES, FakeInt8Linear, {"group": 64, "asym": True}),
    ("16 outlier channels fp32, sym", NAMES, FakeInt8Linear, {"outliers": 16}),
    ("16 outlier channels fp32, asym", NAMES, FakeInt8Linear, {"outliers": 16, "asym": True}),
    ("16 outliers fp32, asym, `value` fp32", ALL_BUT_VALUE, FakeInt8Linear, {"outliers": 16, "asym": True}),
    ("all six linears bf16 (fp32 sums)", NAMES, FakeBf16Linear, {}),
    ("int8 weights, s16 activations, all six", NAMES, FakeInt8Linear, {"act_bits": 16}),
    ("16 outliers, asym u8; value+output s16", {**{n: {"outliers": 16, "asym": True} for n in NAMES},
                                                 "value": {"act_bits": 16}, "output": {"act_bits": 16}},
     FakeInt8Linear, {}),
    ("16 outliers, asym u8; value s16", {**{n: {"outliers": 16, "asym": True} for n in NAMES},
                                         "value": {"act_bits": 16}}, FakeInt8Linear, {}),
    ("int8 weights in groups of 64, s16 activations", NAMES, FakeInt8Linear, {"act_bits": 16, "w_group": 64}),
    ("int8 weights in groups of 128, s16 activations", NAMES, FakeInt8Linear, {"act_bits": 16, "w_group": 128}),
    ("weights groups of 128, asym u8, no outliers", NAMES, FakeInt8Linear, {"asym": True, "w_group": 128}),
    ("weights groups of 128, sym s8, no outliers", NAMES, FakeInt8Linear, {"w_group": 128}),
    ("weights groups of 128, 8 outliers, asym u8", NAMES, FakeInt8Linear, {"outliers": 8, "asym": True, "w_group": 128}),
    ("weights groups of 64, 16 outliers, asym u8", NAMES, FakeInt8Linear, {"outliers": 16, "asym": True, "w_group": 64}),
    ("weights groups of 128, 16 outliers, asym u8", NAMES, FakeInt8Linear, {"outliers": 16, "asym": True, "w_group": 128}),
    ("32 outliers, asym u8; value fp32", ALL_BUT_VALUE, FakeInt8Linear, {"outliers": 32, "asym": True}),
]


def main():
    torch.set_num_threads(2)
    reference_model = SentenceTransformer(MODEL, device="cpu")
    reference = reference_model.encode(TEXTS, convert_to_tensor=True, normalize_embeddings=True)
    # The corpus model-server calibrates on at load (`--dtype int8`); never the golden texts.
    corpus = (ROOT / "model-server/src/backend/calibration.txt").read_text().splitlines()
    stats = calibrate(reference_model, corpus)
    only = sys.argv[2] if len(sys.argv) > 2 else None
    for label, which, kind, options in VARIANTS:
        if only and only not in label:
            continue
        model = SentenceTransformer(MODEL, device="cpu")
        for index, name, parent, attr in linears(model):
            if name in which:
                layer_options = which[name] if isinstance(which, dict) else options
                setattr(parent, attr, kind(getattr(parent, attr), channel_max=stats[(index, name)], **layer_options))
        got = model.encode(TEXTS, convert_to_tensor=True, normalize_embeddings=True)
        c = torch.nn.functional.cosine_similarity(got, reference, dim=1)
        worst = TEXTS[int(c.argmin())]
        print(f"{label:<44} min cosine {c.min():.5f}  mean {c.mean():.5f}  worst {worst[:24]!r}", flush=True)


if __name__ == "__main__":
    main()
