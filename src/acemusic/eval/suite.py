"""The comparison set-up: prompts taken from held-out pieces, every system generating for the same prompts and
seeds, each output cached as MIDI (`<out>/gen/<system>/<i>.mid`) so a rerun only generates what is missing.

A prompt is read off one test piece's metadata: its caption as the text, and its key, mode, meter, tempo,
instruments, style and density as explicit asks (`PromptSpec`); its bar count is min(`bars`, the piece's bars).
`ComposeTask` turns it into the prompt tokens and `Controls` exactly as `acemusic compose` would, and every system
answers that same request:

| system | what it is |
| --- | --- |
| `acemusic` | the checkpoint, `ComposeTask` through the engine (int8, top-p 0.95, guidance 1.5), one sample |
| `lstm` | `baselines.lstm` trained on the same train tokens, sampled under the same grammar and controls |
| `kneser-ney` | `baselines.ngram` 5-gram fit on train, same |
| `unigram` | training token frequencies, same (the random baseline) |
| `copy-train` | `baselines.nearest`: the nearest training piece to the asks, its first bars |
| `real-val` | the same retrieval from the held-out val split: real music answering the prompt, the ceiling |

and `real-test` (the test piece's own first bars) is the reference everything is compared with.

    prompts = make_prompts("data/m21", n=200, bars=8, seed=0)
    gen = Generator(Resources(data="data/m21", checkpoint=...), out_dir)
    paths = gen.run("lstm", prompts)        # cached: existing MIDI files are kept

Tests: `.venv/bin/python -m pytest tests/eval/test_suite.py -q`.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from acemusic.errors import InputError
from acemusic.generate.prompt import PromptSpec
from acemusic.tokenizer import Tokenizer

SYSTEMS = ("acemusic", "lstm", "kneser-ney", "unigram", "copy-train", "real-val")
REFERENCE = "real-test"
SAMPLED = ("lstm", "kneser-ney", "unigram")  # baselines that sample tokens under the grammar


@dataclass
class EvalPrompt:
    """One ask, read from test piece `index`."""

    index: int  # position in the test split
    piece_id: str
    spec: PromptSpec
    bars: int
    seed: int

    def to_dict(self) -> dict:
        return {"index": self.index, "piece_id": self.piece_id, "spec": self.spec.to_dict(), "bars": self.bars,
                "seed": self.seed}

    @classmethod
    def from_dict(cls, d: dict) -> EvalPrompt:
        return cls(d["index"], d["piece_id"], PromptSpec.from_dict(d["spec"]), d["bars"], d["seed"])


def spec_from_meta(meta: dict, tok: Tokenizer) -> PromptSpec:
    """The asks of a piece: caption 0 as text; key, mode, meter (if in the vocabulary), tempo, instruments, style,
    density from its metadata."""
    meter = None
    if meta.get("meter"):
        num, den = (int(x) for x in str(meta["meter"]).split("/"))
        meter = (num, den) if tok.vocab.time_signature_index(num, den) is not None else None
    caps = meta.get("captions") or []
    mode = meta.get("mode") if meta.get("mode") in ("major", "minor") else None
    return PromptSpec(
        text=caps[0] if caps else "", key=None if meta.get("key") is None else int(meta["key"]), mode=mode,
        tempo=float(meta.get("tempo") or 100.0), meter=meter,
        instruments=tuple(int(p) for p in meta.get("instruments") or ()) or (0,),
        style=meta.get("style"), density=None if meta.get("density") is None else int(meta["density"]),
    )


def make_prompts(data: str | Path, n: int, bars: int = 8, seed: int = 0, split: str = "test") -> list[EvalPrompt]:
    """`n` prompts from a seeded permutation of the split's pieces (the first n of the permutation, so a larger n
    extends a smaller one); prompt i gets seed `seed + i`."""
    from acemusic.data.shards import TokenDataset

    ds = TokenDataset(data, split)
    if len(ds) == 0:
        raise InputError(data, f"the {split} split is empty")
    tok = Tokenizer(ds.vocab.config)
    order = np.random.default_rng(seed).permutation(len(ds))[: min(n, len(ds))]
    out = []
    for k, i in enumerate(order.tolist()):
        meta = ds.meta(i)
        n_bars = len(tok.bar_starts(np.asarray(ds.piece(i), np.int64)))
        out.append(EvalPrompt(i, str(meta.get("id", i)), spec_from_meta(meta, tok), max(1, min(bars, n_bars)),
                              seed + k))
    return out


class ModelFreeContext:
    """What `ComposeTask.build/controls` read from a TaskContext, without a model (for the baselines)."""

    def __init__(self, tok: Tokenizer) -> None:
        self.tok = tok

    def embed(self, text: str | None) -> None:
        return None


def asks_of(spec: PromptSpec):
    from acemusic.eval.baselines.nearest import Asks

    meter = f"{spec.meter[0]}/{spec.meter[1]}" if spec.meter else None
    return Asks(tuple(sorted(spec.instruments)), meter, spec.effective_mode, spec.key, spec.style, spec.density,
                spec.tempo)


@dataclass
class Resources:
    """Everything the systems need, loaded on first use (a rerun with a full cache loads nothing)."""

    data: Path
    checkpoint: Path | None = None  # None: the shipped checkpoint
    lstm: Path | None = None
    cache_dir: Path = Path("runs/eval")  # fitted n-gram and unigram tables
    order: int = 5
    quantize: str | None = "int8"
    cfg: float = 1.5
    top_p: float = 0.95
    text: bool = True  # load the MiniLM embedder with the checkpoint (False: no text memory, for tests)
    _loaded: dict = field(default_factory=dict)

    def get(self, name: str):
        if name not in self._loaded:
            self._loaded[name] = getattr(self, f"_load_{name.replace('-', '_')}")()
        return self._loaded[name]

    def _load_tok(self) -> Tokenizer:
        from acemusic.data.shards import TokenDataset

        return Tokenizer(TokenDataset(self.data, "test").vocab.config)

    def _load_grammar(self):
        from acemusic.generate.constraints import Grammar

        return Grammar(self.get("tok").vocab)

    def _load_split_train(self):
        from acemusic.data.shards import TokenDataset

        return TokenDataset(self.data, "train")

    def _load_split_val(self):
        from acemusic.data.shards import TokenDataset

        return TokenDataset(self.data, "val")

    def _load_split_test(self):
        from acemusic.data.shards import TokenDataset

        return TokenDataset(self.data, "test")

    def _load_train_seqs(self):
        from acemusic.eval.nll import sequences_for_split

        return sequences_for_split(self.data, "train", self.get("tok"))[0]

    def _cached(self, name: str, fit: Callable, load: Callable):
        path = self.cache_dir / f"{name}.npz"
        stamp = self.cache_dir / f"{name}.source.json"
        source = {"data": str(Path(self.data).resolve()), "train_tokens": int(self.get("split_train").offsets[-1])}
        if path.is_file() and stamp.is_file() and json.loads(stamp.read_text()) == source:
            return load(path)
        model = fit()
        self.cache_dir.mkdir(parents=True, exist_ok=True)
        model.save(path)
        stamp.write_text(json.dumps(source) + "\n")
        return model

    def _load_kneser_ney(self):
        from acemusic.eval.baselines.ngram import KneserNeyLM

        v = len(self.get("tok").vocab)
        return self._cached(f"kn{self.order}", lambda: KneserNeyLM(self.order).fit(self.get("train_seqs"), v),
                            KneserNeyLM.load)

    def _load_unigram(self):
        from acemusic.eval.baselines.unigram import UnigramLM

        v = len(self.get("tok").vocab)
        return self._cached("unigram", lambda: UnigramLM.fit(self.get("train_seqs"), v), UnigramLM.load)

    def _load_lstm(self):
        from acemusic.eval.baselines.lstm import load_lstm

        if self.lstm is None:
            raise InputError("--lstm", "no LSTM baseline given (train one with `acemusic eval lstm`)")
        return load_lstm(self.lstm)

    def _load_acemusic(self):
        from acemusic.api import load

        bundle = load(self.checkpoint, text=self.text, quantize=self.quantize)
        if bundle.tokenizer.vocab.tokens != self.get("tok").vocab.tokens:
            raise InputError(bundle.path, "checkpoint vocabulary differs from the dataset's")
        return bundle

    def _load_nearest_train(self):
        from acemusic.eval.baselines.nearest import NearestPiece

        return NearestPiece(self.get("split_train").metas())

    def _load_nearest_val(self):
        from acemusic.eval.baselines.nearest import NearestPiece

        return NearestPiece(self.get("split_val").metas())

    def session(self, system: str):
        """A fresh sampling session of a token baseline."""
        if system == "lstm":
            from acemusic.eval.baselines.lstm import LSTMSession

            return LSTMSession(self.get("lstm"))
        if system == "kneser-ney":
            from acemusic.eval.baselines.ngram_session import NgramSession

            return NgramSession(self.get("kneser-ney"))
        if system == "unigram":
            return self.get("unigram").session()
        raise ValueError(f"{system} is not a sampled baseline")


def first_bars(tok: Tokenizer, body: np.ndarray, bars: int) -> np.ndarray:
    """Body tokens of the first min(bars, n) bars."""
    body = np.asarray(body, np.int64)
    n = len(tok.bar_starts(body))
    return tok.slice_bars(body, 0, max(1, min(bars, n))) if n else body


class Generator:
    """Writes `<out>/gen/<system>/<i:04d>.mid` for every prompt, skipping files that exist."""

    def __init__(self, res: Resources, out_dir: str | Path) -> None:
        self.res = res
        self.out = Path(out_dir)

    def path(self, system: str, k: int) -> Path:
        return self.out / "gen" / system / f"{k:04d}.mid"

    def run(self, system: str, prompts: Sequence[EvalPrompt],
            on_piece: Callable[[int], None] | None = None) -> list[Path]:
        """MIDI path per prompt; generates the missing ones. Per-piece seconds go to gen/<system>/seconds.json."""
        if system not in (*SYSTEMS, REFERENCE):
            raise InputError("--systems", f"unknown system {system!r}; known: {', '.join((*SYSTEMS, REFERENCE))}")
        folder = self.out / "gen" / system
        folder.mkdir(parents=True, exist_ok=True)
        times_path = folder / "seconds.json"
        times = json.loads(times_path.read_text()) if times_path.is_file() else {}
        paths = []
        for k, p in enumerate(prompts):
            path = self.path(system, k)
            if not path.is_file():
                t0 = time.perf_counter()
                score = self.generate(system, p)
                tmp = path.with_suffix(".mid.tmp")
                score.dump_midi(str(tmp))
                tmp.replace(path)  # never a half-written file in the cache
                times[str(k)] = round(time.perf_counter() - t0, 3)
                times_path.write_text(json.dumps(times) + "\n")
            paths.append(path)
            if on_piece is not None:
                on_piece(k)
        return paths

    def generate(self, system: str, p: EvalPrompt):
        """One symusic.Score for prompt `p`."""
        from acemusic.generate.tasks.compose import ComposeTask

        res = self.res
        tok = res.get("tok")
        if system == "acemusic":
            from acemusic.generate.sampling import SamplingConfig
            from acemusic.generate.tasks.base import run_task

            bundle = res.get("acemusic")
            task = ComposeTask(p.spec, bars=p.bars)
            return run_task(task, bundle.ctx, SamplingConfig(top_p=res.top_p, cfg=res.cfg), seed=p.seed)
        if system in SAMPLED:
            from acemusic.eval.baselines.sampler import sample_constrained

            task = ComposeTask(p.spec, bars=p.bars)
            req = task.build(ModelFreeContext(tok))
            ids = sample_constrained(res.session(system), req.prompt, req.controls, res.get("grammar"), seed=p.seed,
                                     max_new_tokens=task.max_new_tokens())
            return tok.decode(np.concatenate([req.prompt, ids]))
        if system in ("copy-train", "real-val"):
            split = "train" if system == "copy-train" else "val"
            i = res.get(f"nearest-{split}").pick(asks_of(p.spec), p.bars, seed=p.seed)
            ds = res.get(f"split_{split}")
            return self._decode_piece(ds, i, p.bars)
        if system == REFERENCE:
            return self._decode_piece(res.get("split_test"), p.index, p.bars)
        raise InputError("--systems", f"unknown system {system!r}")

    def _decode_piece(self, ds, i: int, bars: int):
        from acemusic.eval.nll import conditions_from_meta

        tok = self.res.get("tok")
        prefix = tok.cond_prefix(conditions_from_meta(ds.meta(i), tok))
        return tok.decode(np.concatenate([prefix, first_bars(tok, ds.piece(i), bars), [tok.vocab.eos]]))
