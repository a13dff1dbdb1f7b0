"""Stage-1 evaluation: category probes, zero-shot categories and title→image retrieval.

Reports, for the DashCLIP product embeddings and for the off-the-shelf towers (no continual
pretraining: pooled image features, pooled text features, both concatenated):
- leaf-category accuracy of a logistic-regression probe trained on the training products;
- the same probe on image-only product embeddings (title and description withheld);
- zero-shot category accuracy (category names embedded as text, nearest wins);
- title→image retrieval Recall@1/5/10 (a title against image-only product embeddings; any
  product with that exact title is a hit). The off-the-shelf towers share no space, so their
  figure is chance, computed exactly.
"""

from __future__ import annotations

import logging
import math
from pathlib import Path

import numpy as np
import pandas as pd
import torch
from sklearn.linear_model import LogisticRegression
from sklearn.preprocessing import StandardScaler

from dashclip import columns as C
from dashclip.catalog import load_products
from dashclip.data import category_text
from dashclip.model import DashCLIP
from dashclip.inference import embed_cached
from dashclip.towers import build_image_tower, l2n
from dashclip.trunk_cache import build_trunk_cache, text_states

log = logging.getLogger(__name__)
KS = (1, 5, 10)


def probe_predictions(x_train: np.ndarray, y_train: np.ndarray, x_test: np.ndarray, C_reg: float = 1.0) -> np.ndarray:
    """Linear probe: standardised features, multinomial logistic regression; predicted labels."""
    scaler = StandardScaler().fit(x_train)
    clf = LogisticRegression(C=C_reg, max_iter=300, tol=1e-3)
    clf.fit(scaler.transform(x_train), y_train)
    return clf.predict(scaler.transform(x_test))


def probe_accuracy(x_train: np.ndarray, y_train: np.ndarray, x_test: np.ndarray, y_test: np.ndarray,
                   C_reg: float = 1.0) -> float:
    return float((probe_predictions(x_train, y_train, x_test, C_reg) == y_test).mean())


def accuracy_by_group(pred: dict[str, np.ndarray], y: np.ndarray, groups: np.ndarray) -> dict[str, dict]:
    """Per group (e.g. catalog source): its product count and each system's accuracy."""
    return {str(g): {"products": int((groups == g).sum()),
                     **{name: float((p[groups == g] == y[groups == g]).mean()) for name, p in pred.items()}}
            for g in sorted(set(groups))}


def zero_shot_accuracy(x: np.ndarray, y: np.ndarray, class_emb: np.ndarray, classes: list[str]) -> float:
    pred = np.asarray(classes)[(x @ class_emb.T).argmax(1)]
    return float((pred == y).mean())


def title_to_image_recall(q: np.ndarray, gallery: np.ndarray, q_titles: list[str], g_titles: list[str],
                          ks=KS) -> dict[str, float]:
    """Each title against the gallery; a hit is any gallery product with the same (lower-cased) title."""
    g = np.asarray([t.lower() for t in g_titles])
    qt = np.asarray([t.lower() for t in q_titles])
    order = np.argsort(-(q @ gallery.T), axis=1)[:, : max(ks)]
    hits = g[order] == qt[:, None]
    return {f"R@{k}": float(hits[:, :k].any(1).mean()) for k in ks}


def chance_recall(q_titles: list[str], g_titles: list[str], ks=KS) -> dict[str, float]:
    """Expected Recall@k of a random ranking: 1 - C(N-m, k) / C(N, k) averaged over queries."""
    counts = pd.Series([t.lower() for t in g_titles]).value_counts()
    n = len(g_titles)
    out = {}
    for k in ks:
        vals = []
        for t in q_titles:
            m = int(counts.get(t.lower(), 0))
            vals.append(1.0 - math.comb(n - m, k) / math.comb(n, k) if n >= k else float(m > 0))
        out[f"R@{k}"] = float(np.mean(vals))
    return out


@torch.no_grad()
def baseline_features(model: DashCLIP, cache, idx: torch.Tensor) -> dict[str, np.ndarray]:
    """Off-the-shelf towers: pretrained image head over the cached trunk, pooled text states."""
    dev = next(model.parameters()).device
    tower = build_image_tower(model.cfg.image).eval().to(dev)  # pretrained weights, no continual pretraining
    img, txt = [], []
    for s in range(0, len(idx), 256):
        b = idx[s:s + 256]
        img.append(tower.head(cache.image[b].float().to(dev)).mean(1).cpu())
        m = cache.mask[b].to(dev)
        txt.append(model.text_tower.pool(cache.text[b].float().to(dev), m).cpu())
    img_f, txt_f = torch.cat(img).numpy(), torch.cat(txt).numpy()
    return {"image": img_f, "text": txt_f,
            "image+text": np.concatenate([l2n(torch.from_numpy(img_f)).numpy(), l2n(torch.from_numpy(txt_f)).numpy()], 1)}


def eval_split(catalog: str | Path, train_catalog: str | Path | None, max_rows: int | None, seed: int
               ) -> tuple[pd.DataFrame, pd.DataFrame, str]:
    """The probe's training products, the products evaluated and a line saying which."""
    prods = load_products(catalog)
    if train_catalog is None:
        train_df = prods[prods[C.SPLIT] == "train"]
        test_df = prods[prods[C.SPLIT] == "test"]
        setting = f"held-out test split of {catalog}"
    else:
        tr = load_products(train_catalog)
        train_df, test_df = tr[tr[C.SPLIT] == "train"], prods
        setting = f"every product of {catalog}, probe trained on {train_catalog}"
    if max_rows:
        train_df = train_df.sample(min(max_rows, len(train_df)), random_state=seed)
        test_df = test_df.sample(min(max_rows, len(test_df)), random_state=seed)
    return train_df, test_df, setting


@torch.no_grad()
def category_embeddings(model: DashCLIP, classes: list[str]) -> tuple[np.ndarray, np.ndarray]:
    """Category names embedded by DashCLIP's text head and by the plain text tower (the baseline)."""
    dev = next(model.parameters()).device
    states, mask = text_states(model, [category_text(c) for c in classes])
    states, mask = states.float().to(dev), mask.to(dev)
    return model.embed_text(states, mask).cpu().numpy(), l2n(model.text_tower.pool(states, mask)).cpu().numpy()


@torch.no_grad()
def evaluate_products(checkpoint: str | Path, catalog: str | Path, train_catalog: str | Path | None = None,
                      cache_dir: str | None = "runs/cache", max_rows: int | None = None, seed: int = 0,
                      device: str | torch.device = "cpu") -> dict:
    """Evaluate on the catalog's test split (or, with train_catalog, on every row of catalog);
    the model runs on ``device`` in float32, the metrics on the host."""
    model = DashCLIP.from_pretrained(checkpoint).to(device)
    dev = torch.device(device)
    train_df, test_df, setting = eval_split(catalog, train_catalog, max_rows, seed)
    both = pd.concat([train_df, test_df], ignore_index=True)
    cache = build_trunk_cache(model, both, cache_dir=cache_dir)
    n_tr = len(train_df)
    idx_tr, idx_te = torch.arange(n_tr), torch.arange(n_tr, len(both))
    y_tr, y_te = train_df[C.CATEGORY].to_numpy(), test_df[C.CATEGORY].to_numpy()

    full = {k: embed_cached(model, cache, i)["product"].numpy() for k, i in (("tr", idx_tr), ("te", idx_te))}
    img_only = {k: embed_cached(model, cache, i, image_only=True)["product"].numpy() for k, i in (("tr", idx_tr), ("te", idx_te))}
    base = {k: baseline_features(model, cache, i) for k, i in (("tr", idx_tr), ("te", idx_te))}

    classes = sorted(set(y_tr) | set(y_te))
    cls_dash, cls_base = category_embeddings(model, classes)

    titles = test_df[C.TITLE].tolist()
    t_states, t_mask = text_states(model, titles)
    q_dash = model.embed_text(t_states.float().to(dev), t_mask.to(dev)).cpu().numpy()

    def norm(x):
        return x / np.linalg.norm(x, axis=1, keepdims=True).clip(1e-12)

    probes = {"dashclip": (full["tr"], full["te"]), "dashclip_image_only": (img_only["tr"], img_only["te"]),
              **{f"baseline_{k}": (base["tr"][k], base["te"][k]) for k in ("image", "text", "image+text")}}
    pred = {name: probe_predictions(a, y_tr, b) for name, (a, b) in probes.items()}
    acc = {name: float((p == y_te).mean()) for name, p in pred.items()}
    report = {
        "setting": setting,
        # the shared-space product embedding (the served one's text channel reads the category
        # path itself, so a category probe on it would read the answer)
        "embedding": f"shared space ({model.cfg.embed_dim}-d)",
        "checkpoint": str(checkpoint),
        "model_version": model.model_version,
        "train_products": int(n_tr),
        "test_products": int(len(test_df)),
        "categories": len(classes),
        "dashclip": {
            "probe_acc": acc["dashclip"],
            "probe_acc_image_only": acc["dashclip_image_only"],
            "zero_shot_acc": zero_shot_accuracy(full["te"], y_te, cls_dash, classes),
            "zero_shot_acc_image_only": zero_shot_accuracy(img_only["te"], y_te, cls_dash, classes),
            "title_to_image": title_to_image_recall(q_dash, img_only["te"], titles, titles),
        },
        "baseline_image": {"probe_acc": acc["baseline_image"]},
        "baseline_text": {
            "probe_acc": acc["baseline_text"],
            "zero_shot_acc": zero_shot_accuracy(norm(base["te"]["text"]), y_te, cls_base, classes),
        },
        "baseline_image+text": {"probe_acc": acc["baseline_image+text"]},
        "baseline_title_to_image_chance": chance_recall(titles, titles),
        # the same fitted probes, their test accuracy per catalog source (e.g. grocery photos vs fashion)
        "probe_acc_by_source": accuracy_by_group(pred, y_te, test_df[C.SOURCE].fillna("").to_numpy())
        if C.SOURCE in test_df else {},
    }
    return report


def markdown_table(r: dict) -> str:
    d, ch = r["dashclip"], r["baseline_title_to_image_chance"]
    rows = [
        ("DashCLIP product (image + text)", d["probe_acc"], d["zero_shot_acc"], None),
        ("DashCLIP product, image only", d["probe_acc_image_only"], d["zero_shot_acc_image_only"], d["title_to_image"]),
        ("off-the-shelf image (EfficientNet pooled)", r["baseline_image"]["probe_acc"], None, ch),
        ("off-the-shelf text (MiniLM pooled)", r["baseline_text"]["probe_acc"], r["baseline_text"]["zero_shot_acc"], None),
        ("off-the-shelf image + text (concatenated)", r["baseline_image+text"]["probe_acc"], None, None),
    ]

    def f(x):
        return "–" if x is None else f"{100 * x:.1f}"

    lines = [f"Setting: {r['setting']} ({r['test_products']} products, {r['categories']} leaf categories).", "",
             "| embedding | probe acc % | zero-shot acc % | title→image R@1 / R@5 / R@10 % |",
             "| --- | --- | --- | --- |"]
    for name, p, z, t in rows:
        tt = "–" if t is None else " / ".join(f(t[f"R@{k}"]) for k in KS)
        if t is ch:
            tt += " (chance: no shared space)"
        lines.append(f"| {name} | {f(p)} | {f(z)} | {tt} |")
    by = r.get("probe_acc_by_source") or {}
    if len(by) > 1:
        cols = ("dashclip", "dashclip_image_only", "baseline_image", "baseline_text", "baseline_image+text")
        lines += ["", "Probe accuracy % by catalog source (the same fitted probes):", "",
                  "| source | products | " + " | ".join(cols) + " |", "| --- " * (len(cols) + 2) + "|"]
        for src, v in by.items():
            lines.append(f"| {src or '(none)'} | {v['products']} | " + " | ".join(f(v[c]) for c in cols) + " |")
    return "\n".join(lines)
