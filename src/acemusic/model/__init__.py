"""The acemusic decoder: config, transformer, KV cache, conditioning and checkpoints.

    from acemusic.model import ModelConfig, MusicTransformer, loss
    model = MusicTransformer(ModelConfig.preset("small", vocab_size=len(tok.vocab)))
"""

from acemusic.model.checkpoint import load, save
from acemusic.model.conditioning import TextConditioner, cfg_dropout
from acemusic.model.config import ModelConfig, param_count, preset_param_counts
from acemusic.model.kv_cache import KVCache
from acemusic.model.transformer import MusicTransformer, loss

__all__ = [
    "KVCache", "ModelConfig", "MusicTransformer", "TextConditioner", "cfg_dropout", "load", "loss",
    "param_count", "preset_param_counts", "save",
]
