"""FAD of generated music against held-out real music: the shipped model vs Kneser-Ney and random-weights baselines.

Sets (all rendered by FluidSynth + the GM SoundFont at 22.05 kHz, -16 LUFS, through acemusic.audio.batch):
  reference  N test-split pieces (seed 0), as the corpus has them (piano / violin / choir), first 30 s
  real-2     N other test-split pieces, same rendering: the real-vs-real floor (finite-sample bias + variety)
  model      the shipped checkpoint (acemusic.load(), int8 decoding): one 8-bar piece per reference piece, prompted
             with that piece's first caption (it names key, mode, instruments, meter; e.g. "A bright Scottish march
             for violin in 2/4, D major"), seed i, guidance 1.5 (the defaults)
  kneser-ney an interpolated modified Kneser-Ney 5-gram fit on the train split, sampled under the same grammar,
             constraints and key bias, same prompts and seeds (the perplexity baseline, as a generator)
  random     the same architecture with random weights (torch seed 0), the same prompts, seeds, grammar and
             constraints: what the decoding constraints alone produce
FAD of each set against the reference, per embedder (`classic` always; `align` when acemusic.audio.align exists).
Compare the rows with each other, not with FADs from elsewhere: FAD depends on the embedder and the set sizes.

    .venv/bin/python benchmarks/fad.py --data data/m21 --n 40        # ~15-25 min on 2 shared cores

Writes benchmarks/results/fad.json; renders and generated MIDI are cached under --work.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import platform
import time
from pathlib import Path

import numpy as np


def generate(bundle, prompts: list[str], bars: int, out: Path, label: str) -> list[tuple[str, Path]]:
    """One piece per prompt (seed = index), cached as MIDI under out/label/."""
    d = out / label
    d.mkdir(parents=True, exist_ok=True)
    items = []
    t0 = time.perf_counter()
    for i, prompt in enumerate(prompts):
        path = d / f"{i:03d}.mid"
        if not path.is_file():
            score = bundle.compose(prompt, bars=bars, seed=i)
            bundle.save_midi(score, path)
        items.append((f"{label}/{i:03d}", path))
        if (i + 1) % 10 == 0:
            print(f"  {label}: {i + 1}/{len(prompts)} ({time.perf_counter() - t0:.0f} s)", flush=True)
    return items


class KneserNeyComposer:
    """Interpolated modified Kneser-Ney 5-gram fit on the train split (prefix + body + EOS), sampled under the same
    grammar, controls and soft key bias as the model (acemusic.eval.baselines.sampler), decoded by the same
    tokenizer: a `compose`/`save_midi` stand-in for `generate`."""

    def __init__(self, data: str, order: int = 5) -> None:
        from acemusic.eval.baselines.ngram import KneserNeyLM
        from acemusic.eval.nll import sequences_for_split
        from acemusic.generate.constraints import Grammar
        from acemusic.tokenizer import Tokenizer

        self.tok = Tokenizer()
        t = time.perf_counter()
        self.lm = KneserNeyLM(order).fit(sequences_for_split(data, "train", self.tok)[0], len(self.tok.vocab))
        print(f"  kneser-ney: {order}-gram fit in {time.perf_counter() - t:.0f} s", flush=True)
        self.grammar = Grammar(self.tok.vocab)

    def compose(self, prompt: str, bars: int, seed: int):
        from acemusic.eval.baselines.ngram_session import NgramSession
        from acemusic.eval.baselines.sampler import sample_constrained
        from acemusic.eval.suite import ModelFreeContext
        from acemusic.generate.prompt import parse_prompt
        from acemusic.generate.tasks.compose import ComposeTask

        task = ComposeTask(parse_prompt(prompt), bars=bars)
        req = task.build(ModelFreeContext(self.tok))
        ids = sample_constrained(NgramSession(self.lm), req.prompt, req.controls, self.grammar, seed=seed,
                                 max_new_tokens=task.max_new_tokens())
        return self.tok.decode(np.concatenate([req.prompt, ids]))

    @staticmethod
    def save_midi(score, path: Path) -> None:
        score.dump_midi(str(path))


def random_bundle():
    import torch

    from acemusic.api import Bundle, default_checkpoint
    from acemusic.model import MusicTransformer
    from acemusic.model.checkpoint import read_config
    from acemusic.text import TextEmbedder
    from acemusic.tokenizer import Tokenizer

    tok = Tokenizer()
    torch.manual_seed(0)
    model = MusicTransformer(read_config(default_checkpoint())[0]).eval()  # the shipped model's shape
    return Bundle(model, tok, TextEmbedder(), quantize="int8")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data", default="data/m21")
    ap.add_argument("--n", type=int, default=40)
    ap.add_argument("--bars", type=int, default=8)
    ap.add_argument("--seconds", type=float, default=30.0)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--embedders", default="classic,align")
    ap.add_argument("--align-checkpoint", default=None, help="align embedder weights (default: the shipped ones)")
    ap.add_argument("--bootstrap", type=int, default=200, help="bootstrap resamples over files for the intervals")
    ap.add_argument("--work", default="/tmp/acemusic-bench-fad")
    ap.add_argument("--out", default="benchmarks/results/fad.json")
    args = ap.parse_args()

    import torch

    torch.set_num_threads(1)
    import acemusic
    from acemusic.api import default_checkpoint
    from acemusic.audio.batch import BatchConfig, render_batch
    from acemusic.data.shards import TokenDataset
    from acemusic.errors import InputError
    from acemusic.eval.fad import embed_files, fad_from_embeddings, get_embedder
    from acemusic.tokenizer import Tokenizer

    t_start = time.perf_counter()
    work = Path(args.work)
    ds = TokenDataset(args.data, "test")
    tok = Tokenizer(ds.vocab.config)
    metas = ds.metas()
    order = np.random.default_rng(args.seed).permutation(len(metas))
    ref_idx, real2_idx = sorted(order[: args.n].tolist()), sorted(order[args.n: 2 * args.n].tolist())
    prompts = [metas[i]["captions"][0] for i in ref_idx]

    cfg_real = BatchConfig(sr=22050, seconds=args.seconds)
    cfg_gen = BatchConfig(sr=22050)  # generated pieces are 8 bars: rendered whole
    sets: dict[str, list[Path]] = {}
    timings: dict[str, float] = {}
    for name, idx in (("reference", ref_idx), ("real-2", real2_idx)):
        t = time.perf_counter()
        res = render_batch([(metas[i]["id"], tok.decode(ds.piece(i))) for i in idx], work / "audio" / name,
                           cfg_real, workers=args.workers, progress=False)
        sets[name] = [work / "audio" / name / r["wav"] for r in res.ok()]
        timings[f"render_{name}"] = round(time.perf_counter() - t, 1)
        print(f"{name}: {len(sets[name])} renders", flush=True)

    # The cache folders of the model sets carry a fingerprint of the shipped checkpoint: new weights (or a new
    # default checkpoint) must not reuse another model's cached pieces and renders.
    ckpt = default_checkpoint()
    weights = hashlib.sha1((ckpt / "model.safetensors").read_bytes()).hexdigest()[:10]
    shape = hashlib.sha1((ckpt / "config.json").read_bytes()).hexdigest()[:10]
    systems = (("model", f"model-{weights}", lambda: acemusic.load()),
               ("kneser-ney", "kneser-ney", lambda: KneserNeyComposer(args.data)),
               ("random", f"random-{shape}", random_bundle))
    for name, folder, make in systems:
        t = time.perf_counter()
        items = generate(make(), prompts, args.bars, work / "midi", folder)
        timings[f"generate_{name}"] = round(time.perf_counter() - t, 1)
        t = time.perf_counter()
        res = render_batch(items, work / "audio" / folder, cfg_gen, workers=args.workers, progress=False)
        sets[name] = [work / "audio" / folder / r["wav"] for r in res.ok()]
        timings[f"render_{name}"] = round(time.perf_counter() - t, 1)
        print(f"{name}: {len(sets[name])} renders ({timings[f'generate_{name}']} s generating)", flush=True)

    results: dict[str, dict] = {}
    for emb_name in args.embedders.split(","):
        try:
            emb = get_embedder(emb_name, args.align_checkpoint if emb_name == "align" else None)
        except InputError as e:
            results[emb_name] = {"error": str(e)}
            print(f"{emb_name}: {e}")
            continue
        t = time.perf_counter()
        per_file: dict[str, list[np.ndarray]] = {}
        for name, files in sets.items():
            per_file[name] = []
            for f in files:
                x, used, skipped = embed_files([f], emb)
                if used:
                    per_file[name].append(x)
                else:
                    results.setdefault(emb_name, {}).setdefault(f"skipped_{name}", []).extend(skipped)
            results.setdefault(emb_name, {})[f"segments_{name}"] = sum(len(x) for x in per_file[name])
            results[emb_name][f"files_{name}"] = len(per_file[name])
        embs = {name: np.concatenate(xs) for name, xs in per_file.items()}
        systems_fad = ("real-2", "model", "kneser-ney", "random")
        for name in systems_fad:
            results[emb_name][f"fad_{name}_vs_reference"] = round(fad_from_embeddings(embs[name], embs["reference"]),
                                                                  4)
        # Paired bootstrap over files: each draw resamples the reference and every set with replacement, and scores
        # all sets against that one reference draw. Percentiles show the spread (shifted up: a resampled set holds
        # duplicate files, so it looks less varied); the shares say how often one system beats another.
        brng = np.random.default_rng(args.seed)
        boot: dict[str, list[float]] = {name: [] for name in systems_fad}

        def draw(xs: list[np.ndarray], rng: np.random.Generator = brng) -> np.ndarray:
            return np.concatenate([xs[i] for i in rng.integers(0, len(xs), len(xs))])

        for _ in range(args.bootstrap):
            ref = draw(per_file["reference"])
            for name in systems_fad:
                boot[name].append(fad_from_embeddings(draw(per_file[name]), ref))
        if args.bootstrap:
            for name in systems_fad:
                results[emb_name][f"fad_{name}_bootstrap_p2.5_p97.5"] = [
                    round(float(np.percentile(boot[name], q)), 3) for q in (2.5, 97.5)]
            b = {k: np.asarray(v) for k, v in boot.items()}
            results[emb_name]["bootstrap_share"] = {
                "model<kneser-ney": float((b["model"] < b["kneser-ney"]).mean()),
                "model<random": float((b["model"] < b["random"]).mean()),
                "kneser-ney<random": float((b["kneser-ney"] < b["random"]).mean()),
                "real-2<model": float((b["real-2"] < b["model"]).mean()),
            }
        results[emb_name]["dim"] = int(embs["reference"].shape[1])
        results[emb_name]["embed_seconds"] = round(time.perf_counter() - t, 1)
        print(emb_name, {k: v for k, v in results[emb_name].items() if k.startswith("fad")}, flush=True)

    report = {
        "command": f"python benchmarks/fad.py --data {args.data} --n {args.n} --bars {args.bars} "
                   f"--seconds {args.seconds:g} --seed {args.seed} --embedders {args.embedders} "
                   f"--bootstrap {args.bootstrap}" + (f" --align-checkpoint {args.align_checkpoint}"
                                                 if args.align_checkpoint else ""),
        "note": "generated MIDI and renders are cached under --work: timings cover only what this run computed",
        "sets": {name: len(files) for name, files in sets.items()},
        "reference_pieces": [metas[i]["id"] for i in ref_idx],
        "real2_pieces": [metas[i]["id"] for i in real2_idx],
        "prompts": prompts,
        "generation": {"bars": args.bars, "cfg": 1.5, "top_p": 0.95, "temperature": 1.0, "decoding": "int8",
                       "seeds": f"0..{len(prompts) - 1}"},
        "results": results,
        "timings": timings,
        "wall_seconds": round(time.perf_counter() - t_start, 1),
        "loadavg": [round(x, 2) for x in os.getloadavg()], "cpu_count": os.cpu_count(),
        "torch_threads": torch.get_num_threads(), "python": platform.python_version(),
    }
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(report, indent=1) + "\n")
    print(f"wrote {args.out} ({report['wall_seconds']} s)")


if __name__ == "__main__":
    main()
