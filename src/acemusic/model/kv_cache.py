"""KVCache: keys/values kept between decoding steps so each new token costs the same however long the piece is.

Per layer, one buffer (B, G, ring + capacity, D), ring = window + spare:
  slots [0, ring)                        a ring buffer of the last `ring` tokens (slot = position % ring)
  slots [ring, ring + capacity)          every global token so far (prefix and Bar tokens), appended in order
The global part starts at min(max_global, 64) slots and doubles when full, up to max_global: a decoder that reads
every allocated slot (OnnxDecoder) then does at most ~2x the attention of the slots in use, however generous the
caller's max_global (an open-ended piece asks for thousands).
A ring slot is attended while its position is inside the query's window. The `spare` slots let a decoder feed
several tokens at once and `rewind` the ones it rejects (speculative decoding) without having overwritten keys
that later queries still need.
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

import numpy as np
import torch
from torch import Tensor

from acemusic.errors import InputError

_GLOBAL_CHUNK = 64  # global slots allocated at first


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
        spare: int = 0,
    ) -> None:
        self.window, self.max_global, self.batch_size = window, max_global, batch_size
        self.ring = window + spare
        self.capacity = min(max_global, _GLOBAL_CHUNK)  # global slots allocated; grows by doubling (_reserve)
        shape = (n_layer, batch_size, n_kv_head, self.ring + self.capacity, head_dim)
        self.k = torch.zeros(shape, device=device, dtype=dtype)
        self.v = torch.zeros(shape, device=device, dtype=dtype)
        # Bookkeeping lives on the host (numpy): it is a few hundred integers, and per-step tensor ops on it cost
        # more than the attention they mask (measured ~100 us per step as torch ops, ~25 us as numpy).
        self.ring_pos = np.full(self.ring, -1, np.int64)  # position held by each ring slot
        self.global_pos = np.full(max_global, -1, np.int64)
        self.global_valid = np.zeros((batch_size, max_global), bool)
        self.n_global = 0  # global slots in use
        self.pos = 0  # tokens consumed so far = absolute position of the next token
        self.memory_kv: dict[int, tuple[Tensor, Tensor]] = {}
        self.derived: dict[object, object] = {}  # tables a decoder derives from memory_kv (FastDecoder.attach)
        # Set by plan() for the tokens being written now, shared by every layer.
        self._dst: Tensor | None = None  # slots to write
        self._src: Tensor | None = None  # time indices of the new k/v that go there

    @property
    def device(self) -> torch.device:
        return self.k.device

    def reset(self) -> None:
        self.ring_pos.fill(-1)
        self.global_pos.fill(-1)
        self.global_valid.fill(False)
        self.n_global, self.pos = 0, 0
        self.memory_kv.clear()
        self.derived.clear()

    def plan(self, is_global: Tensor) -> Tensor | None:
        """Prepare writing T new tokens (is_global: (B, T) bool) at positions pos..pos+T-1.

        Returns the decode attention mask (B, 1, 1, ring + n_global) for a single token, or None for a prefill
        (the prefill attends within its own tokens with the training mask). Call `advance(T)` after the forward.
        """
        T = is_global.shape[1]
        if T > 1 and self.pos != 0:
            raise InputError("prefill", "prefill needs an empty cache (call reset() first)")
        positions, ring_dst, ring_src, g_dst, g_src = self._place(is_global.cpu().numpy())
        self._dst = torch.from_numpy(np.concatenate([ring_dst, g_dst])).to(self.device)
        self._src = torch.from_numpy(np.concatenate([ring_src, g_src])).to(self.device)
        if T > 1:
            return None
        return torch.from_numpy(self._allowed(positions)[:, None]).to(self.device)  # (B, 1, 1, R + n)

    def plan_tokens(self, is_global: np.ndarray) -> tuple[Tensor, Tensor, Tensor, Tensor]:
        """Prepare feeding T tokens per row after a prefill (is_global (B, T) host-side bools), for FastDecoder.

        Returns (ring_dst (T,), global_dst, global_src, bias): the ring slots of the new tokens, the appended
        global slots and the time steps they come from, and the additive attention mask
        (B, T, ring + n_global) of the T queries (0 = attend, -inf = not): causal among the new tokens, the window
        over the ring, global slots of the row once out of the window (the rule of `plan`). Call `advance(T)`
        after the forward, and `rewind(n)` to drop the last n tokens again.
        """
        self._check_spare(is_global.shape[1])
        positions, ring_dst, _, g_dst, g_src = self._place(is_global)
        bias = np.where(self._allowed(positions), np.float32(0.0), np.float32(-np.inf))
        ring_t, g_dst_t, g_src_t, bias_t = (torch.from_numpy(a).to(self.device) for a in (ring_dst, g_dst, g_src, bias))
        return ring_t, g_dst_t, g_src_t, bias_t.to(self.k.dtype)

    def plan_beside(self, is_global: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Like `plan_tokens`, for a decoder that attends over the cache as it was before this call plus the T new
        keys held beside it (OnnxDecoder), then writes the new keys into their slots.

        Returns (dst, src, allowed): the slots to write and the time steps whose keys go there, and what each query
        may attend among the slots before the call, (B, T, ring + n_global) bool; among the new tokens the rule is
        plain causality (they are all inside each other's window). Same keys as `plan_tokens`: a ring slot that a
        new token overwrites is out of every new query's window (needs spare >= T - 1), and a new global token is
        still inside it. Call `advance(T)` after the forward."""
        T = is_global.shape[1]
        self._check_spare(T)
        allowed = self._allowed(np.arange(self.pos, self.pos + T))  # before booking; _place checks the batch
        _, ring_dst, ring_src, g_dst, g_src = self._place(is_global)
        return np.concatenate([ring_dst, g_dst]), np.concatenate([ring_src, g_src]), allowed

    def _check_spare(self, T: int) -> None:
        if self.ring - self.window + 1 < T:
            raise InputError("tokens", f"{T} tokens at once need a cache with spare >= {T - 1} ring slots")

    def _place(self, is_global: np.ndarray) -> tuple[np.ndarray, ...]:
        """Book T new tokens at positions pos..pos+T-1: ring slots for the last min(T, ring) of them, a global slot
        appended for every step where any row is global. Returns (positions, ring_dst, ring_src, global_dst,
        global_src): slots, and the time steps whose keys go there."""
        B, T = is_global.shape
        if self.batch_size != B:
            raise InputError("batch", f"cache was made for batch size {self.batch_size}, got {B}")
        g_src = np.flatnonzero(is_global.any(0))  # time steps where any row is global
        n_new = len(g_src)
        if self.n_global + n_new > self.max_global:
            raise InputError("max_global", f"more than {self.max_global} global tokens; make a bigger cache")
        self._reserve(self.n_global + n_new)
        R = self.ring
        positions = np.arange(self.pos, self.pos + T)
        keep = positions[-R:]  # older ones would be overwritten (and are out of every later query's window)
        ring_src = np.arange(T - len(keep), T)
        ring_dst = keep % R
        self.ring_pos[ring_dst] = keep
        g_dst = np.arange(R + self.n_global, R + self.n_global + n_new)
        sl = slice(self.n_global, self.n_global + n_new)
        self.global_pos[sl] = positions[g_src]
        self.global_valid[:, sl] = is_global[:, g_src]
        self.n_global += n_new
        return positions, ring_dst, ring_src, g_dst, g_src

    def _allowed(self, queries: np.ndarray) -> np.ndarray:
        """(B, T, ring + n_global) bool: what queries at positions `queries` (T,) may attend. A ring slot while it
        holds an earlier (or the same) position inside the window; a row's global slot once its token has left
        the window (inside it the ring holds that key: counting it twice would change the softmax)."""
        W, R, n = self.window, self.ring, self.n_global
        d = queries[:, None] - self.ring_pos[None, :]  # (T, R)
        ring_ok = (self.ring_pos >= 0)[None] & (d >= 0) & (d < W)
        glob_ok = self.global_valid[:, None, :n] & ((queries[:, None] - self.global_pos[None, :n]) >= W)[None]
        return np.concatenate([np.broadcast_to(ring_ok, (self.batch_size, len(queries), R)), glob_ok], axis=2)

    def _reserve(self, n: int) -> None:
        """Make room for n global slots: reallocate the buffers (new tensors: views of the old ones go stale)."""
        if n <= self.capacity:
            return
        cap = min(self.max_global, max(n, 2 * self.capacity))
        for name in ("k", "v"):
            old = getattr(self, name)
            new = old.new_zeros(*old.shape[:3], self.ring + cap, old.shape[4])
            new[:, :, :, : old.shape[3]] = old
            setattr(self, name, new)
        self.capacity = cap

    def rewind(self, n: int) -> None:
        """Forget the last `n` tokens fed (rejected draft tokens): their ring slots and global slots are released."""
        if not 0 <= n <= min(self.pos, self.ring - self.window):
            raise InputError("rewind", f"cannot rewind {n} tokens (at most the {self.ring - self.window} spare)")
        if n == 0:
            return
        self.pos -= n
        self.ring_pos[self.ring_pos >= self.pos] = -1
        k = int((self.global_pos[: self.n_global] >= self.pos).sum())
        if k:
            sl = slice(self.n_global - k, self.n_global)
            self.global_pos[sl] = -1
            self.global_valid[:, sl] = False
            self.n_global -= k

    def write(self, layer: int, k: Tensor, v: Tensor) -> None:
        """Store the new keys/values (B, G, T, D) of `layer` into the slots chosen by plan()."""
        self.k[layer].index_copy_(2, self._dst, k.index_select(2, self._src).to(self.k.dtype))
        self.v[layer].index_copy_(2, self._dst, v.index_select(2, self._src).to(self.v.dtype))

    def keys_values(self, layer: int) -> tuple[Tensor, Tensor]:
        """Keys and values a decode step attends over: (B, G, ring + n_global, D) views, no copy."""
        n = self.ring + self.n_global
        return self.k[layer, :, :, :n], self.v[layer, :, :, :n]

    def advance(self, n: int) -> None:
        self.pos += n
