"""Baselines the model is measured against on the same splits: `KneserNeyLM` (interpolated modified Kneser-Ney)."""

from acemusic.eval.baselines.ngram import KneserNeyLM

__all__ = ["KneserNeyLM"]
