"""ONNX Runtime backend for the bundled all-MiniLM-L6-v2.

The model is exported once (torch.onnx + ORT's BERT graph fusions) into a cache dir
and reused by every later process; nothing is downloaded. Pooling (masked mean) and
L2 normalisation are part of the exported graph, so a forward pass returns the
final vectors. Batches are sorted by length and padded only to their longest text.
"""

from __future__ import annotations

import hashlib
import os
import tempfile
import warnings
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from embedder.base import Vectors

__all__ = ["OnnxMiniLM", "default_cache_dir", "export_onnx"]

EXPORT_VERSION = "1"  # bump when the exported graph changes


def default_cache_dir() -> Path:
    return Path.home() / ".cache" / "frugate" / "onnx"


def _fingerprint(model_dir: Path) -> str:
    weights = model_dir / "model.safetensors"
    stat = weights.stat()
    key = f"{EXPORT_VERSION}:{stat.st_size}:{int(stat.st_mtime)}"
    return hashlib.sha256(key.encode()).hexdigest()[:16]


def export_onnx(model_dir: Path, cache_dir: Path | None = None) -> Path:
    """The exported model for `model_dir`, exporting it first if the cache lacks it."""
    cache_dir = cache_dir or default_cache_dir()
    out = cache_dir / f"minilm-{_fingerprint(model_dir)}.onnx"
    if out.exists():
        return out
    import torch
    from onnxruntime.transformers import optimizer
    from transformers import AutoModel

    class Pooled(torch.nn.Module):
        def __init__(self, inner: Any) -> None:
            super().__init__()
            self.inner = inner

        def forward(self, input_ids: Any, attention_mask: Any, token_type_ids: Any) -> Any:
            hidden = self.inner(
                input_ids=input_ids, attention_mask=attention_mask, token_type_ids=token_type_ids
            ).last_hidden_state
            mask = attention_mask.unsqueeze(-1).to(hidden.dtype)
            pooled = (hidden * mask).sum(1) / mask.sum(1).clamp(min=1e-9)
            return torch.nn.functional.normalize(pooled, p=2.0, dim=1)

    cache_dir.mkdir(parents=True, exist_ok=True)
    model = Pooled(AutoModel.from_pretrained(str(model_dir))).eval()
    ids = torch.ones((2, 8), dtype=torch.long)
    # Tracing warns about data-dependent branches that are constant for BERT; quiet them
    # so a warnings-as-errors host (tests) does not fall back to torch.
    with tempfile.TemporaryDirectory(dir=cache_dir) as tmp, warnings.catch_warnings():
        warnings.simplefilter("ignore")
        raw = Path(tmp) / "raw.onnx"
        with torch.no_grad():
            torch.onnx.export(
                model,
                (ids, ids, torch.zeros_like(ids)),
                str(raw),
                dynamo=False,
                input_names=["input_ids", "attention_mask", "token_type_ids"],
                output_names=["embedding"],
                dynamic_axes={
                    "input_ids": {0: "batch", 1: "seq"},
                    "attention_mask": {0: "batch", 1: "seq"},
                    "token_type_ids": {0: "batch", 1: "seq"},
                    "embedding": {0: "batch"},
                },
                opset_version=17,
            )
        fused = optimizer.optimize_model(
            str(raw), model_type="bert", num_heads=12, hidden_size=384, opt_level=1
        )
        part = Path(tmp) / "fused.onnx"
        fused.save_model_to_file(str(part))
        os.replace(part, out)  # atomic: concurrent exporters never see half a file
    return out


class OnnxMiniLM:
    """Same vectors as the sentence-transformers pipeline (cosine > 0.9999), faster on CPU.

    On CPU the model is compute-bound (cost ~ padded tokens), so batches are small (8)
    runs of length-sorted texts: bigger batches mostly add padding.
    """

    def __init__(
        self,
        model_dir: Path,
        max_seq_length: int = 256,
        threads: int | None = None,
        cache_dir: Path | None = None,
        batch_size: int = 8,
    ) -> None:
        import onnxruntime as ort
        from tokenizers import Tokenizer

        path = export_onnx(model_dir, cache_dir)
        self.batch_size = batch_size
        self.tokenizer = Tokenizer.from_file(str(model_dir / "tokenizer.json"))
        self.tokenizer.no_padding()
        self.tokenizer.enable_truncation(max_length=max_seq_length)
        opts = ort.SessionOptions()
        opts.intra_op_num_threads = threads or (os.cpu_count() or 1)
        opts.inter_op_num_threads = 1
        opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        # Idle pool threads would spin on the cores the event loop and faiss need.
        opts.add_session_config_entry("session.intra_op.allow_spinning", "0")
        self.session = ort.InferenceSession(str(path), opts, providers=["CPUExecutionProvider"])

    def _forward(self, encodings: Sequence[Any]) -> Vectors:
        width = max(len(e.ids) for e in encodings)
        ids = np.zeros((len(encodings), width), dtype=np.int64)
        mask = np.zeros_like(ids)
        for row, enc in enumerate(encodings):
            ids[row, : len(enc.ids)] = enc.ids
            mask[row, : len(enc.ids)] = 1
        feeds = {"input_ids": ids, "attention_mask": mask, "token_type_ids": np.zeros_like(ids)}
        out: Vectors = self.session.run(None, feeds)[0]
        return out

    def embed(self, texts: Sequence[str]) -> Vectors:
        encodings = self.tokenizer.encode_batch(list(texts))
        order = np.argsort([len(e.ids) for e in encodings], kind="stable")
        out = np.empty((len(texts), 384), dtype=np.float32)
        for start in range(0, len(order), self.batch_size):
            rows = order[start : start + self.batch_size]
            out[rows] = self._forward([encodings[i] for i in rows])
        return out
