"""Evaluation: held-out likelihood under one shared protocol (`nll`) and the baselines the model is compared to."""

from acemusic.eval.baselines import KneserNeyLM

__all__ = ["KneserNeyLM"]
