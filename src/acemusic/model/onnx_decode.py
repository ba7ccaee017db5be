"""OnnxDecoder: FastDecoder's decode step as one onnxruntime graph, built from the weights in memory.

    dec = OnnxDecoder(model, quantize="int8")     # graph from the disk cache, or built (~0.7 s, `onnx` import)
    logits = model.prefill(ids, bar, pos, glob, text_emb, cond_mask, cache)   # prefill stays in torch
    logits = dec.forward(ids, bars, positions, is_global, cache)  # (B, T) host-side arrays -> (B, T, V) logits

Why: FastDecoder's step of 'small' at batch 1 is ~4 ms, of which the 33 weight matrices are ~1.3 ms (fbgemm
dynamic int8) and the rest is the dispatch of ~200 small torch ops from Python. Here the step is one session run:
onnxruntime's MLAS int8 kernels (DynamicQuantizeMatMul, one weight scale per output channel) do the 33 matrices in
~0.6 ms and a small op costs ~0.5-1.5 us in C++. Measured (benchmarks/decode_step.py): 1.8-2.2x faster per forward
at 1-2 rows, and closer to float32 (mean KL 6e-5 against fbgemm's 2e-4 on a real chorale; fbgemm quantizes
activations to 7 bits, MLAS to 8).

The math is FastDecoder's (scale folded into the queries, RoPE tables, cross-attention folded into per-row tables)
with one change that saves copying the cache in and out of the graph: it attends over the cache as it was before
the call (every allocated slot, numpy views of KVCache's buffers read in place, unused ones masked) plus the
T new keys, and returns the new keys and values, which are then written into their slots on the host
(`KVCache.plan_beside`).

The graph uses com.microsoft contrib ops (DynamicQuantizeMatMul, FusedMatMul, FastGelu), so it runs on
onnxruntime, not on any ONNX runtime. It is not an export format: `graph_bytes` rebuilds it whenever the weights
change.
"""

from __future__ import annotations

import contextlib
import hashlib
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch import Tensor

from acemusic.model.fast_decode import FastDecoder, decode_weights, fold_cross
from acemusic.model.kv_cache import KVCache
from acemusic.model.rope import rope_cos_sin
from acemusic.paths import cache_root, write_atomic

_ROPE_POSITIONS = 4096  # as FastDecoder: rows to start with, extended on demand
_CACHE_MIN_PARAMS = 1_000_000  # smaller graphs are not worth a file
_I64_MAX = np.iinfo(np.int64).max


class _Graph:
    """A small helper around onnx.helper: unique names, constants, and the node list."""

    def __init__(self) -> None:
        from onnx import helper, numpy_helper

        self.helper, self.numpy_helper = helper, numpy_helper
        self.nodes: list = []
        self.inits: list = []
        self._n = 0
        self._consts: dict[tuple, str] = {}

    def name(self, hint: str) -> str:
        self._n += 1
        return f"{hint}_{self._n}"

    def init(self, arr: np.ndarray, hint: str) -> str:
        n = self.name(hint)
        self.inits.append(self.numpy_helper.from_array(np.ascontiguousarray(arr), n))
        return n

    def const(self, values, dtype=np.int64) -> str:
        key = (tuple(np.atleast_1d(values).tolist()), np.dtype(dtype).str)
        if key not in self._consts:
            self._consts[key] = self.init(np.asarray(values, dtype).reshape(-1), "c")
        return self._consts[key]

    def op(self, op_type: str, *inputs: str, domain: str = "", **attrs) -> str:
        out = self.name(op_type.lower())
        self.nodes.append(self.helper.make_node(op_type, list(inputs), [out], domain=domain, **attrs))
        return out

    def slice(self, x: str, start: int, end: int, axis: int) -> str:
        return self.op("Slice", x, self.const([start]), self.const([end]), self.const([axis]))


@dataclass
class _Spec:
    H: int
    G: int
    D: int
    Hc: int
    rms: bool
    swiglu: bool
    int8: bool


def _build(w: dict, s: _Spec) -> bytes:
    """The decode graph, serialized. Inputs: ids, bars, poss (B, T) int64; cos, sin (T, 1, D) RoPE rows of the T
    positions; bias (B, 1, T*Hg, S + T) additive mask; per layer i the cache k{i}, v{i} (B, G, S, D), and for
    cross-attention layers the folded tables a{i} (B, d, Hc*M), o{i} (B, Hc*M, d). Outputs: logits (B, T, V), and
    the new keys and values k_new, v_new (B, L*G, T, D)."""
    from onnx import TensorProto, helper

    g = _Graph()
    H, G, D, Hg = s.H, s.G, s.D, s.H // s.G
    L, V = len(w["layers"]), w["head"].shape[0]
    f32, i64 = TensorProto.FLOAT, TensorProto.INT64
    inputs = [helper.make_tensor_value_info(n, i64, ["B", "T"]) for n in ("ids", "bars", "poss")]
    inputs += [helper.make_tensor_value_info(n, f32, ["T", 1, D]) for n in ("cos", "sin")]
    inputs += [helper.make_tensor_value_info("bias", f32, ["B", 1, "TQ", "ST"])]

    def norm(x: str, weight: np.ndarray) -> str:
        op = "SimplifiedLayerNormalization" if s.rms else "LayerNormalization"
        return g.op(op, x, g.init(weight, "ln"), epsilon=1e-6, axis=-1)

    def linear(x: str, weight: np.ndarray) -> str:  # weight (out, in), torch layout
        if not s.int8:
            return g.op("MatMul", x, g.init(weight.T, "w"))
        scale = np.maximum(np.abs(weight).max(axis=1), 1e-12) / 127.0  # per output channel, symmetric
        q = np.clip(np.round(weight / scale[:, None]), -127, 127).astype(np.int8)
        return g.op("DynamicQuantizeMatMul", x, g.init(q.T, "wq"), g.init(scale.astype(np.float32), "ws"),
                    g.init(np.zeros(len(scale), np.int8), "wz"), domain="com.microsoft")

    def transposed_matmul(a: str, b: str) -> str:  # a @ b^T
        return g.op("FusedMatMul", a, b, transB=1, domain="com.microsoft")

    emb = [g.op("Gather", g.init(w[k], k), name) for k, name in (("tok", "ids"), ("bar", "bars"), ("pos", "poss"))]
    x = g.op("Add", g.op("Add", emb[0], emb[1]), emb[2])  # (B, T, d)
    S = g.op("Shape", "k0", start=2, end=3)  # cache slots
    k_out, v_out = [], []
    for i, lw in enumerate(w["layers"]):
        inputs += [helper.make_tensor_value_info(n, f32, ["B", G, "S", D]) for n in (f"k{i}", f"v{i}")]
        qkv = g.op("Reshape", linear(norm(x, lw["norm_attn"]), lw["qkv"]), g.const([0, 0, H + 2 * G, D]))
        qk = g.slice(qkv, 0, H + G, 2)
        rolled = g.op("Concat", g.slice(qk, D // 2, D, 3), g.slice(qk, 0, D // 2, 3), axis=3)
        qk = g.op("Add", g.op("Mul", qk, "cos"), g.op("Mul", rolled, "sin"))  # RoPE, half-split layout
        q = g.op("Transpose", g.op("Reshape", g.slice(qk, 0, H, 2), g.const([0, 0, G, Hg, D])), perm=[0, 2, 1, 3, 4])
        q = g.op("Reshape", q, g.const([0, 0, -1, D]))  # (B, G, T*Hg, D): queries (token, head) per K/V head
        k_new = g.op("Transpose", g.slice(qk, H, H + G, 2), perm=[0, 2, 1, 3])  # (B, G, T, D)
        v_new = g.op("Transpose", g.slice(qkv, H + G, H + 2 * G, 2), perm=[0, 2, 1, 3])
        k_out.append(k_new)
        v_out.append(v_new)
        # the cache's slots, then the new tokens: scores (B, G, T*Hg, S + T) without concatenating the keys
        scores = g.op("Concat", transposed_matmul(q, f"k{i}"), transposed_matmul(q, k_new), axis=3)
        p = g.op("Softmax", g.op("Add", scores, "bias"), axis=-1)
        p_old = g.op("Slice", p, g.const([0]), S, g.const([3]))
        p_new = g.op("Slice", p, S, g.const([_I64_MAX]), g.const([3]))
        y = g.op("Add", g.op("MatMul", p_old, f"v{i}"), g.op("MatMul", p_new, v_new))  # (B, G, T*Hg, D)
        y = g.op("Transpose", g.op("Reshape", y, g.const([0, 0, -1, Hg, D])), perm=[0, 2, 1, 3, 4])
        x = g.op("Add", x, linear(g.op("Reshape", y, g.const([0, 0, H * D])), lw["proj"]))
        if lw["cross"] is not None:  # softmax over the memory slots of each head, then the folded output table
            inputs += [helper.make_tensor_value_info(f"a{i}", f32, ["B", "d", "HM"]),
                       helper.make_tensor_value_info(f"o{i}", f32, ["B", "HM", "d"])]
            sc = g.op("Reshape", g.op("MatMul", norm(x, lw["cross"][0]), f"a{i}"), g.const([0, 0, s.Hc, -1]))
            sc = g.op("Reshape", g.op("Softmax", sc, axis=-1), g.const([0, 0, -1]))
            x = g.op("Add", x, g.op("MatMul", sc, f"o{i}"))
        h = linear(norm(x, lw["norm_mlp"]), lw["fc"])
        if s.swiglu:
            n = lw["fc"].shape[0] // 2
            a, b = g.slice(h, 0, n, 2), g.slice(h, n, 2 * n, 2)
            h = g.op("Mul", g.op("Mul", a, g.op("Sigmoid", a)), b)
        else:
            h = g.op("FastGelu", h, domain="com.microsoft")  # the tanh approximation, as the model
        x = g.op("Add", x, linear(h, lw["out"]))
    logits = g.op("MatMul", norm(x, w["norm_f"]), g.init(w["head"].T, "head"))
    for name, src in (("logits", logits), ("k_new", g.op("Concat", *k_out, axis=1)),
                      ("v_new", g.op("Concat", *v_out, axis=1))):
        g.nodes.append(helper.make_node("Identity", [src], [name]))
    outputs = [helper.make_tensor_value_info("logits", f32, ["B", "T", V]),
               helper.make_tensor_value_info("k_new", f32, ["B", L * G, "T", D]),
               helper.make_tensor_value_info("v_new", f32, ["B", L * G, "T", D])]
    graph = helper.make_graph(g.nodes, "acemusic_decode", inputs, outputs, g.inits)
    opsets = [helper.make_opsetid("", 17), helper.make_opsetid("com.microsoft", 1)]
    model = helper.make_model(graph, opset_imports=opsets)
    model.ir_version = 8  # onnxruntime >= 1.16 reads it
    return model.SerializeToString()


def graph_bytes(model: torch.nn.Module, int8: bool, cache: Path | None = None, weights: dict | None = None,
                fresh: bool = False) -> bytes:
    """The serialized decode graph of `model`, from the disk cache when this exact model was built before.

    Building needs the `onnx` package, whose import alone takes ~0.6 s; the cache (~16 MB per model under
    ~/.cache/acemusic/decoders/, keyed by a hash of the weights, of this module's code and of the onnx version)
    keeps that out of every later start (models under 1M parameters are simply rebuilt). `cache=None` = the
    default directory; a cache that cannot be written is skipped. `weights`: `decode_weights(model)` when the
    caller has it already; `fresh`: build even when the cache has a file (and replace it)."""
    w = weights or decode_weights(model)
    cfg = model.cfg
    spec = _Spec(cfg.n_head, cfg.n_kv_head, cfg.head_dim, cfg.cross_heads, cfg.norm == "rmsnorm",
                 cfg.mlp == "swiglu", int8)
    arrays = [w[k] for k in ("tok", "bar", "pos", "norm_f", "head")]
    for lw in w["layers"]:
        arrays += [lw[k] for k in ("norm_attn", "qkv", "proj", "norm_mlp", "fc", "out")] + list(lw["cross"] or ())
    if sum(t.numel() for t in arrays) < _CACHE_MIN_PARAMS:  # built in milliseconds (tests' tiny models)
        return _build(_numpy(w), spec)
    h = hashlib.sha1(f"{spec} {onnx_version()}".encode())
    h.update(Path(__file__).read_bytes())  # any change to the graph code is a new graph
    for t in arrays:
        h.update(str(tuple(t.shape)).encode())
        h.update(t.numpy())
    path = (cache or cache_root() / "decoders") / f"{h.hexdigest()}.onnx"
    if not fresh:
        with contextlib.suppress(OSError):
            return path.read_bytes()
    data = _build(_numpy(w), spec)
    with contextlib.suppress(OSError):  # read-only or full: build again next time
        write_atomic(path, data)
    return data


def onnx_version() -> str:
    """The installed onnx package's version, without importing it (the import is what the cache saves)."""
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("onnx")
    except PackageNotFoundError:
        return "none"


def _numpy(w: dict) -> dict:
    out = {k: v.numpy() for k, v in w.items() if k != "layers"}
    out["layers"] = [{k: (None if v is None else tuple(t.numpy() for t in v) if isinstance(v, tuple) else v.numpy())
                      for k, v in lw.items()} for lw in w["layers"]]
    return out


class OnnxDecoder:
    """FastDecoder's `step`/`forward` contract on onnxruntime; see the module docstring.

    `threads`: onnxruntime intra-op threads of the next calls (one session per count, created on first use). The
    outputs are bit-identical at every thread count (the int8 sums are exact and the float kernels split their
    outputs, not their reductions; tests/model/test_onnx_decode.py checks it), so threads are a speed setting only.
    """

    def __init__(self, model: torch.nn.Module, quantize: str | None = None, threads: int = 1,
                 cache: Path | None = None) -> None:
        import onnxruntime

        if quantize not in (None, "int8"):
            raise ValueError(f"quantize must be None or 'int8', not {quantize!r}")
        if model.tok_emb.weight.device.type != "cpu":
            raise ValueError("OnnxDecoder runs on the CPU; use FastDecoder for a model on another device")
        self.cfg = cfg = model.cfg
        self.int8 = quantize == "int8"
        self.H, self.G, self.D = cfg.n_head, cfg.n_kv_head, cfg.head_dim
        self.device = torch.device("cpu")
        self.threads = threads
        self._ort = onnxruntime
        w = decode_weights(model)
        self._bytes = graph_bytes(model, self.int8, cache, w)
        self._sessions: dict[int, object] = {}
        try:
            self._session(threads)  # fail here, not mid-generation, if onnxruntime cannot run the graph
        except Exception:  # onnxruntime raises its own exception types: a damaged cache file, build afresh
            self._bytes = graph_bytes(model, self.int8, cache, w, fresh=True)
            self._session(threads)
        self._cross = {i: lw["cross"][1:] for i, lw in enumerate(w["layers"]) if lw["cross"] is not None}
        self._rope(_ROPE_POSITIONS)

    def _session(self, threads: int):
        if threads not in self._sessions:
            so = self._ort.SessionOptions()
            so.intra_op_num_threads = threads
            so.inter_op_num_threads = 1
            so.log_severity_level = 3  # no warnings on stderr
            self._sessions[threads] = self._ort.InferenceSession(self._bytes, so, providers=["CPUExecutionProvider"])
        return self._sessions[threads]

    def _rope(self, n: int) -> None:
        cos, sin = rope_cos_sin(torch.arange(n), self.D, self.cfg.rope_base)
        self.cos, self.sin = cos.numpy()[:, None, :], sin.numpy()[:, None, :]  # (n, 1, D)

    def attach(self, cache: KVCache) -> None:
        """Cross-attention tables (as FastDecoder's) and numpy views of the cache's buffers as graph inputs, kept
        on the cache (`forward` calls this itself the first time it sees a cache)."""
        if cache.k.dtype != torch.float32 or cache.k.device.type != "cpu":
            raise ValueError("OnnxDecoder needs a float32 CPU cache")
        feeds = {}
        for i, (wq, wo) in self._cross.items():
            a, o = fold_cross(*cache.memory_kv[i], wq, wo)
            feeds[f"a{i}"], feeds[f"o{i}"] = a.numpy(), o.numpy()
        cache.derived[self] = feeds
        self._bind_cache(cache, feeds)

    def _bind_cache(self, cache: KVCache, feeds: dict) -> None:
        """Numpy views of the cache's buffers as inputs (shared memory: read in place); again after the cache grew."""
        k, v = cache.k.numpy(), cache.v.numpy()  # (L, B, G, slots, D)
        for i in range(self.cfg.n_layer):
            feeds[f"k{i}"], feeds[f"v{i}"] = k[i], v[i]

    step = FastDecoder.step  # one token per row, through `forward`

    def forward(self, ids: np.ndarray, bar_idx: np.ndarray, pos: np.ndarray, is_global: np.ndarray,
                cache: KVCache) -> Tensor:
        """Feed T tokens per row ((B, T) arrays) after a prefill; logits (B, T, V) for each of them (T > 1 needs
        a cache with spare >= T - 1; `cache.rewind` drops the tokens a caller rejects)."""
        if self not in cache.derived:
            self.attach(cache)
        feeds = cache.derived[self]
        cfg = self.cfg
        B, T = np.shape(ids)
        p = cache.pos
        if p + T > self.cos.shape[0]:
            self._rope(2 * (p + T))
        glob = np.asarray(is_global, bool) if cfg.global_tokens else np.zeros((B, T), bool)
        dst, src, allowed = cache.plan_beside(glob)
        S = cache.k.shape[3]
        if feeds["k0"].shape[2] != S:  # the cache grew its global slots: new buffers
            self._bind_cache(cache, feeds)
        # Additive mask (B, 1, T*Hg, S + T): queries (token, head) by keys (all cache slots, then the new tokens).
        bias = np.full((B, T, S + T), -np.inf, np.float32)
        bias[:, :, : allowed.shape[2]][allowed] = 0.0
        bias[:, :, S:][:, np.tril(np.ones((T, T), bool))] = 0.0  # new key j <= query t
        feeds["bias"] = np.repeat(bias, self.H // self.G, axis=1)[:, None]
        feeds["ids"] = np.asarray(ids, np.int64)
        feeds["bars"] = np.clip(np.asarray(bar_idx, np.int64), 0, cfg.max_bars - 1)
        feeds["poss"] = np.clip(np.asarray(pos, np.int64), 0, cfg.max_position - 1)
        feeds["cos"], feeds["sin"] = self.cos[p : p + T], self.sin[p : p + T]
        logits, k_new, v_new = self._session(self.threads).run(None, feeds)
        k_new, v_new = (a.reshape(B, cfg.n_layer, self.G, T, -1).swapaxes(0, 1)[:, :, :, src] for a in (k_new, v_new))
        cache.k.numpy()[:, :, :, dst] = k_new  # (L, B, G, n, D) into their slots
        cache.v.numpy()[:, :, :, dst] = v_new
        cache.advance(T)
        return torch.from_numpy(logits)
