"""KVCache: keys/values kept between decoding steps so each new token costs the same however long the piece is.

Per layer, one preallocated buffer (B, G, window + max_global, D):
  slots [0, window)                      a ring buffer of the last `window` tokens (slot = position % window)
  slots [window, window + max_global)    every global token so far (prefix and Bar tokens), appended in order
RoPE is applied at the absolute position before a key is stored, so slots never need re-rotating.

Rows of a batch advance together (same position) but may disagree on which tokens are global: a global slot is
appended when any row's token is global and `global_valid` (B, max_global) records which rows it belongs to.
A global key is only attended once it has left the window (position distance >= window); inside the window the ring
already holds it, and counting it twice would change the softmax. That reproduces exactly the training mask
    j <= i and (i - j < window or is_global[j]).
The attention mask of a step is built once (`plan`) and shared by all layers. Memory K/V for cross-attention are
computed at prefill and kept in `memory_kv`.
"""

from __future__ import annotations

import torch
from torch import Tensor

from acemusic.errors import InputError


class KVCache:
    def __init__(
        self,
        n_layer: int,
        batch_size: int,
        n_kv_head: int,
        head_dim: int,
        window: int,
        max_global: int,
        device: torch.device | str = "cpu",
        dtype: torch.dtype = torch.float32,
    ) -> None:
        self.window, self.max_global, self.batch_size = window, max_global, batch_size
        shape = (n_layer, batch_size, n_kv_head, window + max_global, head_dim)
        self.k = torch.zeros(shape, device=device, dtype=dtype)
        self.v = torch.zeros(shape, device=device, dtype=dtype)
        self.ring_pos = torch.full((window,), -1, dtype=torch.long, device=device)  # position held by each slot
        self.global_pos = torch.full((max_global,), -1, dtype=torch.long, device=device)
        self.global_valid = torch.zeros(batch_size, max_global, dtype=torch.bool, device=device)
        self.n_global = 0  # global slots in use
        self.pos = 0  # tokens consumed so far = absolute position of the next token
        self.memory_kv: dict[int, tuple[Tensor, Tensor]] = {}
        # Set by plan() for the tokens being written now, shared by every layer.
        self._dst: Tensor | None = None  # slots to write
        self._src: Tensor | None = None  # time indices of the new k/v that go there

    @property
    def device(self) -> torch.device:
        return self.k.device

    def reset(self) -> None:
        self.ring_pos.fill_(-1)
        self.global_pos.fill_(-1)
        self.global_valid.fill_(False)
        self.n_global, self.pos = 0, 0
        self.memory_kv.clear()

    def plan(self, is_global: Tensor) -> Tensor | None:
        """Prepare writing T new tokens (is_global: (B, T) bool) at positions pos..pos+T-1.

        Returns the decode attention mask (B, 1, 1, window + n_global) for a single token, or None for a prefill
        (the prefill attends within its own tokens with the training mask). Call `advance(T)` after the forward.
        """
        B, T = is_global.shape
        if self.batch_size != B:
            raise InputError("batch", f"cache was made for batch size {self.batch_size}, got {B}")
        if T > 1 and self.pos != 0:
            raise InputError("prefill", "prefill needs an empty cache (call reset() first)")
        g_src = is_global.any(dim=0).nonzero().flatten()  # time steps where any row is global
        n_new = g_src.numel()
        if self.n_global + n_new > self.max_global:
            raise InputError("max_global", f"more than {self.max_global} global tokens; make a bigger cache")
        W = self.window
        positions = torch.arange(self.pos, self.pos + T, device=self.device)
        # Ring: the last min(T, W) new tokens.
        keep = positions[-W:]
        ring_src = torch.arange(T - keep.numel(), T, device=self.device)
        ring_dst = keep % W
        self.ring_pos[ring_dst] = keep
        # Global slots, appended.
        g_dst = torch.arange(W + self.n_global, W + self.n_global + n_new, device=self.device)
        sl = slice(self.n_global, self.n_global + n_new)
        self.global_pos[sl] = positions[g_src]
        self.global_valid[:, sl] = is_global[:, g_src]
        self.n_global += n_new
        self._dst = torch.cat([ring_dst, g_dst])
        self._src = torch.cat([ring_src, g_src])
        if T > 1:
            return None
        p = self.pos  # the query position
        n = self.n_global
        ring_ok = (self.ring_pos >= 0)[None].expand(B, W)  # the ring only ever holds positions p-W+1..p
        glob_ok = self.global_valid[:, :n] & ((p - self.global_pos[:n]) >= W)[None]  # (B, n)
        return torch.cat([ring_ok, glob_ok], dim=1)[:, None, None, :]  # (B, 1, 1, W + n)

    def write(self, layer: int, k: Tensor, v: Tensor) -> None:
        """Store the new keys/values (B, G, T, D) of `layer` into the slots chosen by plan()."""
        self.k[layer].index_copy_(2, self._dst, k.index_select(2, self._src).to(self.k.dtype))
        self.v[layer].index_copy_(2, self._dst, v.index_select(2, self._src).to(self.v.dtype))

    def keys_values(self, layer: int) -> tuple[Tensor, Tensor]:
        """Keys and values a decode step attends over: (B, G, window + n_global, D) views, no copy."""
        n = self.window + self.n_global
        return self.k[layer, :, :, :n], self.v[layer, :, :, :n]

    def advance(self, n: int) -> None:
        self.pos += n
