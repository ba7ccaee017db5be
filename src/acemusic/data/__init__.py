"""Datasets: sources and metadata (corpus, m21, analysis), captions, shard build and the `TokenDataset` reader."""

from acemusic.data.shards import SPLITS, TokenDataset

__all__ = ["SPLITS", "TokenDataset"]
