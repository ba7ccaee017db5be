"""Held-out NLL of every system that assigns probabilities, per token and per note, on one split.

Same protocol for all (`eval/nll.py`): each piece is `prefix + body + EOS`, the prefix is given, the body and EOS
are scored, every token once. Per note = the summed NLL over the number of notes (Pitch tokens) of the scored
pieces, so tokenizations with different tokens per note stay comparable.

| system | how |
| --- | --- |
| `acemusic` | `model_nll.score_model`, windows of 512 ids, stride 256, caption 0 as the text (as `eval nll`) |
| `lstm` | `baselines.lstm.lstm_nll`, each piece from a zero state over its full length |
| `kneser-ney` | `KneserNeyLM.nll_many` |
| `unigram` | `UnigramLM.masked_nll`: renormalized over the grammar's allowed tokens (the distribution it samples) |

The copy baselines and real music have no probabilities: they are left out.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import numpy as np

from acemusic.eval.suite import Resources


def count_notes(tok, seqs: Sequence[np.ndarray], starts: Sequence[int]) -> int:
    """Pitch tokens among the scored targets."""
    off, size = tok.vocab.offset["Pitch"], tok.vocab.size("Pitch")
    return int(sum(((s[st:] >= off) & (s[st:] < off + size)).sum() for s, st in zip(seqs, starts, strict=True)))


def heldout_nll(res: Resources, systems: Sequence[str], split: str = "test", limit: int | None = None,
                on_system: Callable[[str], None] | None = None) -> dict:
    """{system: {nll_per_token, nll_per_note, perplexity, tokens, notes, pieces}} for the probabilistic systems."""
    import math

    from acemusic.eval.nll import sequences_for_split

    tok = res.get("tok")
    seqs, starts = sequences_for_split(res.data, split, tok)
    if limit is not None:
        seqs, starts = seqs[:limit], starts[:limit]
    notes = count_notes(tok, seqs, starts)
    out: dict = {}
    text_source = None
    for system in systems:
        if system not in ("acemusic", "lstm", "kneser-ney", "unigram"):
            continue
        if on_system is not None:
            on_system(system)
        if system == "acemusic":
            from acemusic.data.shards import TokenDataset
            from acemusic.eval.model_nll import first_captions, score_model

            ds = TokenDataset(res.data, split)
            bundle = res.get("acemusic")
            texts = first_captions(ds)[: len(seqs)]
            text_source = "caption 0, stored embeddings"
            if all(t is None for t in texts) and bundle.embedder is not None:
                # A build without (or still computing) caption embeddings: embed caption 0 with the same MiniLM.
                caps = [(ds.meta(i).get("captions") or [None])[0] for i in range(len(seqs))]
                emb = bundle.embedder.encode([c for c in caps if c])
                it = iter(np.asarray(emb, np.float32))
                texts = [next(it) if c else None for c in caps]
                text_source = "caption 0, embedded by the bundle's MiniLM"
            r = score_model(bundle.model, tok, seqs, starts, 512, 256, texts, 8)
            total, n = r.total_nll, r.n_tokens
        elif system == "lstm":
            from acemusic.eval.baselines.lstm import lstm_nll

            total, n = lstm_nll(res.get("lstm"), seqs, starts)
        elif system == "kneser-ney":
            from acemusic.eval.nll import ngram_nll

            total, n = ngram_nll(res.get("kneser-ney"), seqs, starts)
        else:
            total, n = res.get("unigram").masked_nll(res.get("grammar"), seqs, starts)
        out[system] = {"text": text_source if system == "acemusic" else None,
                       "nll_per_token": total / n, "nll_per_note": total / notes, "perplexity": math.exp(total / n),
                       "tokens": n, "notes": notes, "pieces": len(seqs), "split": split}
    return out
