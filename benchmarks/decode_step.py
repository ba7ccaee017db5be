"""One decode forward of the shipped model: OnnxDecoder (onnxruntime graph) against FastDecoder (torch ops).

    .venv/bin/python benchmarks/decode_step.py [--repeats 300] [--checkpoint DIR]

1. Speed: milliseconds per forward after a 40-token prefill, for B rows x T tokens (B=1: one sequence; B=2: a
   guided pair; B=8: a batch of candidates; T=5: a token and 4 speculative drafts), int8 weights, the two decoders
   interleaved in the same process. onnxruntime also at 2 threads (its outputs are bit-identical at any count).
2. Fidelity on a real piece (tests/fixtures/midi/bach_bwv66_6.mid, teacher-forced token by token): KL divergence of
   each decoder's next-token distribution from the float32 reference (MusicTransformer.decode_step), and how often
   the argmax agrees. This is what int8 costs, measured, not assumed.
Writes benchmarks/results/decode_step.json.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import time
from pathlib import Path

import numpy as np
import torch

ROOT = Path(__file__).resolve().parents[1]


def prefilled(model, B: int, spare: int):
    g = torch.Generator().manual_seed(0)
    cache = model.new_cache(B, max_global=48, spare=spare)
    T0 = 40
    ids = torch.randint(1, model.cfg.vocab_size, (B, T0), generator=g)
    z = torch.zeros(B, T0, dtype=torch.long)
    glob = torch.zeros(B, T0, dtype=torch.bool)
    glob[:, :9] = True
    text = torch.nn.functional.normalize(torch.randn(B, model.cfg.d_text, generator=g), dim=-1)
    model.prefill(ids, z, z, glob, text, torch.ones(B, dtype=torch.bool), cache)
    return cache


def time_forward(dec, model, B: int, T: int, n: int) -> float:
    """Median of 5 blocks of n/5 forwards, in ms (each forward is rewound so the cache stays the same size)."""
    cache = prefilled(model, B, spare=T)  # rewinding all T tokens needs T spare slots
    rng = np.random.default_rng(0)
    ids = rng.integers(1, model.cfg.vocab_size, (B, T))
    z = np.zeros((B, T), np.int64)
    glob = np.zeros((B, T), bool)
    with torch.inference_mode():
        for _ in range(10):
            dec.forward(ids, z, z, glob, cache)
            cache.rewind(T)
        blocks = []
        for _ in range(5):
            t0 = time.perf_counter()
            for _ in range(n // 5):
                dec.forward(ids, z, z, glob, cache)
                cache.rewind(T)
            blocks.append((time.perf_counter() - t0) / (n // 5) * 1e3)
    return statistics.median(blocks)


def fidelity(model, decoders: dict, tok) -> dict:
    """Teacher-forced KL(reference || decoder) and argmax agreement over a real chorale."""
    score = tok.load_score(ROOT / "tests" / "fixtures" / "midi" / "bach_bwv66_6.mid")
    ids = tok.encode(score)[:600]
    bar, pos, glob = (torch.from_numpy(np.asarray(a)) for a in tok.structure(ids))
    n0 = 12
    out = {}
    with torch.inference_mode():
        logs = {}
        for name, dec in {"reference": None, **decoders}.items():
            cache = model.new_cache(1, max_global=int(glob.sum()) + 8)
            t = torch.from_numpy(ids)[None]
            model.prefill(t[:, :n0], bar[None, :n0].long(), pos[None, :n0].long(), glob[None, :n0].bool(), None,
                          None, cache)
            steps = []
            for i in range(n0, len(ids) - 1):
                if dec is None:
                    steps.append(model.decode_step(t[:, i], bar[None, i].long(), pos[None, i].long(),
                                                   glob[None, i].bool(), cache)[0])
                else:
                    steps.append(dec.step([int(ids[i])], [int(bar[i])], [int(pos[i])], np.array([bool(glob[i])]),
                                          cache)[0])
            logs[name] = torch.stack(steps).float().log_softmax(-1)
        ref = logs.pop("reference")
        for name, lp in logs.items():
            kl = (ref.exp() * (ref - lp)).sum(-1)
            out[name] = {"tokens": len(kl), "kl_mean": float(kl.mean()), "kl_p99": float(kl.quantile(0.99)),
                         "argmax_agreement": float((lp.argmax(-1) == ref.argmax(-1)).float().mean())}
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--repeats", type=int, default=300, help="forwards per setting")
    ap.add_argument("--checkpoint", type=Path, default=None)
    ap.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "results" / "decode_step.json")
    args = ap.parse_args()

    from acemusic.api import default_checkpoint, load
    from acemusic.model.fast_decode import FastDecoder
    from acemusic.model.onnx_decode import OnnxDecoder

    torch.set_num_threads(1)
    bundle = load(args.checkpoint or default_checkpoint(), quantize=None, text=False)
    model = bundle.model
    torch_dec, onnx_dec = FastDecoder(model, "int8"), OnnxDecoder(model, "int8")
    rows = []
    for B in (1, 2, 8):
        for T in (1, 5):
            r = {"rows": B, "tokens": T}
            onnx_dec.threads = 1
            r["torch_ms"] = round(time_forward(torch_dec, model, B, T, args.repeats), 3)
            r["onnx_ms"] = round(time_forward(onnx_dec, model, B, T, args.repeats), 3)
            onnx_dec.threads = 2
            r["onnx_2threads_ms"] = round(time_forward(onnx_dec, model, B, T, args.repeats), 3)
            r["speedup"] = round(r["torch_ms"] / r["onnx_ms"], 2)
            r["speedup_2threads"] = round(r["torch_ms"] / r["onnx_2threads_ms"], 2)
            rows.append(r)
            print(r, flush=True)
    onnx_dec.threads = 1
    fid = fidelity(model, {"torch_int8": torch_dec, "onnx_int8": onnx_dec, "onnx_fp32": OnnxDecoder(model)},
                   bundle.tokenizer)
    print(json.dumps(fid, indent=1))
    report = {"model": str(bundle.path), "forward_ms": rows, "fidelity_vs_fp32_reference": fid,
              "loadavg": [round(x, 2) for x in os.getloadavg()], "cpu_count": os.cpu_count(),
              "torch": torch.__version__, "onnxruntime": __import__("onnxruntime").__version__,
              "note": "ms per forward of B rows x T tokens after a 40-token prefill (random tokens), int8, median of "
                      "5 blocks; torch = FastDecoder (fbgemm dynamic int8, 1 thread), onnx = OnnxDecoder (MLAS "
                      "DynamicQuantizeMatMul). Fidelity: teacher-forced on a real chorale against the fp32 "
                      "MusicTransformer.decode_step."}
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(report, indent=1) + "\n")


if __name__ == "__main__":
    main()
