"""The labeller that scales a small seed of graded pairs: a cross-encoder teacher.

A text tower (the packaged MiniLM by default) reads ``query [SEP] product text`` and predicts
the ESCI grade (4-way). Trained on the seed labels, it labels a much larger candidate set;
its expected grade (sum_k k * p_k) is the soft relevance used by stage 2.
"""

from __future__ import annotations

import hashlib
import json
import logging
import math
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from pydantic import BaseModel, ConfigDict, Field
from sklearn.metrics import f1_score
from torch import nn
from tqdm import tqdm

from dashclip import checkpoint as ckpt
from dashclip import columns as C
from dashclip import distributed
from dashclip.config import TextTowerConfig
from dashclip.metrics import auc
from dashclip.towers import build_text_tower
from dashclip.training import BatchLoader, LoopConfig, fit, length_grouped_batches, to_device, training_device

log = logging.getLogger(__name__)


def teacher_product_text(row: dict) -> str:
    """What the teacher reads about a product: title, category path and attributes (short)."""
    attrs = " ".join(x for x in (row.get(C.COLOR, ""), row.get(C.GENDER, ""), row.get(C.USAGE, "")) if x)
    desc = (row.get(C.DESCRIPTION, "") or "")[:80]
    return " | ".join(x for x in (row.get(C.TITLE, ""), row.get(C.CATEGORY, ""), attrs, desc) if x)


PAIR_HASH_SEP = "\x1f"  # between the parts of a pair's content hash


def pair_content_hash(query: str, product_text: str, teacher_version: str) -> str:
    """What a teacher label depends on: SHA-256 (hex) of query, product text and teacher version
    joined by U+001F (``spark_jobs/lib/labels.py`` computes the same with Spark's ``sha2``)."""
    return hashlib.sha256(PAIR_HASH_SEP.join((query, product_text, teacher_version)).encode()).hexdigest()



class CrossEncoder(nn.Module):
    def __init__(self, cfg: TextTowerConfig, max_length: int = 64):
        super().__init__()
        self.tower = build_text_tower(cfg)
        self.max_length = max_length
        self.head = nn.Sequential(nn.Dropout(0.1), nn.Linear(self.tower.hidden, 4))

    def tokenize(self, queries: list[str], products: list[str]) -> dict[str, torch.Tensor]:
        enc = self.tower.tokenizer(list(queries), list(products), padding=True, truncation="only_second",
                                   max_length=self.max_length, return_tensors="pt")
        return dict(enc)

    def forward(self, **enc) -> torch.Tensor:
        states = self.tower.model(**enc).last_hidden_state  # (B, T, H)
        return self.head(states[:, 0])  # (B, 4) grade logits

    @torch.no_grad()
    def predict(self, queries: list[str], products: list[str], batch_size: int = 64, progress: bool = False,
                bf16: bool = False, int8: bool = False) -> np.ndarray:
        """(N, 4) grade probabilities, in input order.

        Pairs are scored in order of text length so that a batch pads little (the cross-encoder's
        cost grows with the longest pair of the batch). ``bf16``: run the tower under bfloat16
        autocast where the hardware has bfloat16 arithmetic (``bf16_supported``), otherwise in
        float32: faster, with grade probabilities moving by about 1e-3 (bench/results/teacher_bf16.json).
        ``int8``: where bfloat16 is not used and the model is on the CPU, score with a copy whose linear
        layers are dynamically quantised to int8: faster than float32 but the grades move
        (bench/results/teacher_precision.json); the model itself stays float32."""
        self.eval()
        device = next(self.parameters()).device
        precision = label_precision(device, bf16, int8)
        use_bf16 = precision == "bf16"
        scorer = int8_copy(self) if precision == "int8" else self
        out = np.zeros((len(queries), 4), dtype=np.float32)
        order = np.argsort([len(q) + len(p) for q, p in zip(queries, products)], kind="stable")
        for s in tqdm(range(0, len(order), batch_size), desc="teacher labels", disable=not progress):
            b = order[s:s + batch_size]
            enc = {k: v.to(device) for k, v in self.tokenize([queries[i] for i in b], [products[i] for i in b]).items()}
            with torch.autocast(device.type, dtype=torch.bfloat16, enabled=use_bf16):
                logits = scorer(**enc)
            out[b] = F.softmax(logits.float(), -1).cpu().numpy()
        return out


def teacher_labels(teacher: CrossEncoder, queries: list[str], products: list[str], batch_size: int = 64,
                   progress: bool = False, bf16: bool = False, int8: bool = False) -> np.ndarray:
    """(N,) soft relevance labels: the expected grade sum_k k * p_k of each (query, product text)
    pair. Stage 2 labels its mined pairs with it in process; ``spark_jobs/label_pairs.py`` per task."""
    probs = teacher.predict(queries, products, batch_size=batch_size, progress=progress, bf16=bf16, int8=int8)
    return probs @ np.arange(4)


def label_precision(device: torch.device, bf16: bool, int8: bool) -> str:
    """What ``predict`` runs in: "bf16" when asked and fast here, else "int8" when asked and on the
    CPU, else "fp32"."""
    if bf16 and bf16_supported(device):
        return "bf16"
    return "int8" if int8 and device.type == "cpu" else "fp32"


def int8_copy(model: nn.Module) -> nn.Module:
    """A copy of ``model`` with every ``nn.Linear`` dynamically quantised to int8 (weights int8,
    activations quantised per batch; CPU only). Uses torch.ao's eager API, deprecated in favour of
    torchao but present in the pinned torch."""
    import copy
    import warnings

    from torch.ao.quantization import quantize_dynamic
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return quantize_dynamic(copy.deepcopy(model).eval(), {nn.Linear}, dtype=torch.qint8)


def bf16_supported(device: torch.device) -> bool:
    """Whether bfloat16 autocast is fast here: a CUDA device with bf16, or a CPU with AVX512-BF16
    or AMX (elsewhere CPU bf16 is emulated and slower than float32)."""
    if device.type == "cuda":
        return torch.cuda.is_bf16_supported()
    cpu = torch.cpu
    return any(getattr(cpu, f, lambda: False)() for f in ("_is_avx512_bf16_supported", "_is_amx_tile_supported"))


def train_teacher(model: CrossEncoder, queries: list[str], products: list[str], labels: np.ndarray,
                  epochs: int = 2, batch_size: int = 32, lr: float = 4e-5, seed: int = 0, progress: bool = True,
                  length_group: int = 50, device: str | torch.device | None = None, workers: int = 0) -> list[float]:
    """Fine-tune on seed pairs with class-balanced cross-entropy, in length-grouped batches
    (``length_group`` batches per sorted window; 1: random batches), on ``device`` (default: where
    the model is; the model is moved there and stays), tokenised by ``workers`` loader processes
    on CUDA (``BatchLoader``); returns the mean loss per epoch. Under torchrun each process
    encodes its share of a batch and the loss is that of the whole batch (gathered logits)."""
    dev = training_device(next(model.parameters()).device if device is None else device, "teacher training")
    model.to(dev)
    torch.manual_seed(seed)  # the head's dropout
    rng = np.random.default_rng(seed)
    lengths = np.array([len(x) for x in model.tower.tokenizer(list(queries), list(products), truncation="only_second",
                                                              max_length=model.max_length)["input_ids"]])
    y = torch.as_tensor(labels, dtype=torch.long)
    counts = torch.bincount(y, minlength=4).float().clamp_min(1)
    weight = (counts.sum() / (4 * counts)).sqrt().to(dev)  # soften the imbalance (many 0s)
    y = y.to(dev)
    opt = torch.optim.AdamW(model.parameters(), lr=lr, weight_decay=0.01)
    steps = epochs * math.ceil(len(y) / batch_size)
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda s: min(1.0, (s + 1) / max(1, steps // 10)) * max(0.0, 1 - s / steps))

    def prepare(b: np.ndarray) -> tuple[list[int], dict[str, torch.Tensor]]:
        b = b.tolist()
        mine = distributed.local(b, distributed.shard(len(b)))
        return b, model.tokenize([queries[i] for i in mine], [products[i] for i in mine])

    def step(prepared: tuple[list[int], dict[str, torch.Tensor]]):
        b, enc = prepared
        logits = distributed.gather(model(**to_device(enc, dev)), distributed.shard(len(b)))
        return {"ce": F.cross_entropy(logits, y[b], weight=weight)}, len(b)

    loop = LoopConfig(name="teacher", epochs=epochs, objective="ce")

    def epoch_batches(epoch: int) -> BatchLoader:
        return BatchLoader(length_grouped_batches(lengths, batch_size, length_group, rng.permutation), prepare, dev,
                           workers)

    return fit(model, opt, sched, epoch_batches, step, loop, progress=progress, device=dev).epoch_losses


def agreement(probs: np.ndarray, labels: np.ndarray) -> dict[str, float]:
    """Teacher vs held-out seed labels: accuracy, macro-F1, AUC of relevant (>= 2) vs not."""
    pred = probs.argmax(1)
    expected = probs @ np.arange(4)
    return {
        "accuracy": float((pred == labels).mean()),
        "macro_f1": float(f1_score(labels, pred, average="macro", labels=[0, 1, 2, 3], zero_division=0)),
        "auc_relevant": auc(expected, labels >= 2),
        "pairs": int(len(labels)),
    }


# --- teacher checkpoints -----------------------------------------------------------------------------
class TeacherConfig(BaseModel):
    """A saved teacher's architecture: its text tower and the pair length it reads."""

    model_config = ConfigDict(extra="forbid", protected_namespaces=())

    name: str = "teacher"
    text: TextTowerConfig
    max_length: int = Field(64, ge=4)


def save_teacher(teacher: CrossEncoder, out: str | Path, extra_meta: dict | None = None) -> str:
    """Write the teacher as a checkpoint folder (``model.safetensors``, ``config.json``,
    ``text_config.json``, ``tokenizer/``, ``meta.json``); returns its version,
    ``teacher-D[:10]`` with D the content digest of weights and config (``dashclip.checkpoint``)."""
    from safetensors.torch import save_file

    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    state = {k: v.detach().contiguous().cpu() for k, v in teacher.state_dict().items()}
    save_file(state, str(out / ckpt.WEIGHTS))
    cfg = TeacherConfig(text=teacher.tower.cfg, max_length=teacher.max_length)
    (out / ckpt.CONFIG).write_bytes(cfg.model_dump_json(indent=2).encode())
    digest = ckpt.content_digest(out / ckpt.WEIGHTS, out / ckpt.CONFIG)
    version = f"{cfg.name}-{digest[:10]}"
    (out / "text_config.json").write_text(teacher.tower.model.config.to_json_string())
    teacher.tower.tokenizer.save_pretrained(str(out / "tokenizer"))
    meta = {**(extra_meta or {}), "model_version": version, ckpt.DIGEST_KEY: digest, "stage": "teacher"}
    (out / ckpt.META).write_text(json.dumps(meta, indent=2, default=str))  # last: the checkpoint is complete
    return version


def verify_teacher(folder: str | Path) -> dict:
    """meta.json of a teacher checkpoint whose weights and config are unchanged since saving (no model built)."""
    folder = Path(folder)
    meta = ckpt.read_meta(folder)
    if meta.get("stage") != "teacher":
        raise ckpt.CheckpointError(folder, ckpt.META, f"stage is {meta.get('stage')!r}, not 'teacher' "
                                   "(a stage-2 run saves its teacher in OUT/teacher)")
    ckpt.read_json(folder, ckpt.CONFIG)
    ckpt.weight_shapes(folder)
    ckpt.check_digest(folder, meta)
    return meta


def load_teacher(folder: str | Path, device: str | torch.device = "cpu") -> CrossEncoder:
    """A saved teacher on ``device``, in eval mode, with ``model_version`` set."""
    from safetensors.torch import load_file

    folder = Path(folder)
    meta = verify_teacher(folder)
    data = ckpt.read_json(folder, ckpt.CONFIG)
    try:
        cfg = TeacherConfig.model_validate(data)
    except ValueError as e:
        raise ckpt.CheckpointError(folder, ckpt.CONFIG, f"not a valid teacher config ({e})") from None
    arch = cfg.text.model_copy(update={"random_init": ckpt.read_json(folder, "text_config.json"),
                                       "tokenizer": str(folder / "tokenizer")})
    model = CrossEncoder(arch, max_length=cfg.max_length)
    model.tower.cfg = cfg.text
    model.load_state_dict(load_file(str(folder / ckpt.WEIGHTS)))
    model.model_version = meta["model_version"]
    return model.to(device).eval()
