"""The parts of a neural news recommender, Legommenders-style: item encoder x user encoder x
predictor, each found by name in a constant registry, plus the optional GENRE profile fusion.

This module imports torch at the top: import it lazily (inside functions) so Dagster code
locations load without torch. `genre_dagster.scoring.neural` does exactly that.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from genre_dagster.embedding.layer_cache import TokenStates


class AdditiveAttention(nn.Module):
    """Additive attention pooling: weight_i = softmax_i(q . tanh(W x_i + b))."""

    def __init__(self, dim: int, query_dim: int) -> None:
        super().__init__()
        self.proj = nn.Linear(dim, query_dim)
        self.query = nn.Linear(query_dim, 1, bias=False)

    def forward(self, x: torch.Tensor, mask: torch.Tensor | None = None) -> torch.Tensor:
        """x [B, N, D], mask [B, N] (True = keep; every row has a True) -> [B, D]."""
        logits = self.query(torch.tanh(self.proj(x))).squeeze(-1)
        if mask is not None:
            logits = logits.masked_fill(~mask, torch.finfo(logits.dtype).min)
        weights = torch.softmax(logits, dim=-1)
        if x.shape[1] <= 8:
            # Few views per row (NAML's title/abstract/category): a batched matmul of thousands
            # of 1xN by NxD products is 2x slower than multiply-and-sum.
            return (weights[..., None] * x).sum(1)
        return torch.bmm(weights[:, None, :], x)[:, 0]


class MaskDropout(nn.Module):
    """Inverted dropout whose masks come from NumPy's PCG64 random words.

    torch's CPU dropout draws its mask element by element (`bernoulli_`): it was 40% of an NRMS
    training step. PCG64 fills 16-bit words about 5x faster. The drop probability is rounded to
    a multiple of 1/65536. The generator is seeded from torch's RNG when the module is built, so
    a model built under a fixed torch seed drops the same units on every run.
    """

    LEVELS = 1 << 16

    def __init__(self, p: float) -> None:
        super().__init__()
        if not 0.0 <= p < 1.0:
            raise ValueError(f"dropout must be in [0, 1), got {p}")
        self.p = p
        self.threshold = round(p * self.LEVELS)  # a unit is dropped when its word is below
        self.scale = self.LEVELS / (self.LEVELS - self.threshold)
        self.rng = np.random.default_rng(int(torch.randint(0, 2**62, (1,)).item()))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not self.training or self.threshold == 0:
            return x
        words = np.frombuffer(self.rng.bytes(2 * x.numel()), dtype=np.uint16)
        # A float mask times x: its backward is one multiply (torch.where's was 3x slower).
        mask = torch.from_numpy((words >= self.threshold).astype(np.float32)).view(x.shape)
        return x * mask.mul_(self.scale).to(x.dtype)

    def extra_repr(self) -> str:
        return f"p={self.p}"


# ---------------------------------------------------------------- item encoders
# Input: one precomputed embedding matrix per text field ("view") and the category index of
# each item (in the model's own vocabulary, last index = unknown category).


class LinearItemEncoder(nn.Module):
    """Concatenate the views (and a learned category embedding) and project to hidden size."""

    def __init__(self, spec: ModelSpec) -> None:
        super().__init__()
        cfg = spec.config
        self.category = _category_embedding(spec)
        in_dim = sum(spec.field_dims) + (cfg["category_dim"] if self.category is not None else 0)
        self.dropout = MaskDropout(cfg["dropout"])
        self.proj = nn.Linear(in_dim, cfg["hidden_dim"])

    def forward(self, views: list[torch.Tensor], categories: torch.Tensor) -> torch.Tensor:
        parts = list(views)
        if self.category is not None:
            parts.append(self.category(categories))
        # Dropout after the projection: same regularizing role, 3x fewer random draws than on
        # the 384-d inputs (it was a quarter of the training time).
        return self.dropout(self.proj(torch.cat(parts, dim=-1)))


class MultiViewItemEncoder(nn.Module):
    """NAML-style: each view projected on its own, the category embedding is one more view,
    then additive attention across views picks how much each view counts per item."""

    def __init__(self, spec: ModelSpec) -> None:
        super().__init__()
        cfg = spec.config
        hidden = cfg["hidden_dim"]
        self.dropout = MaskDropout(cfg["dropout"])
        self.views = nn.ModuleList(nn.Linear(dim, hidden) for dim in spec.field_dims)
        self.category = _category_embedding(spec)
        if self.category is not None:
            self.category_proj = nn.Linear(cfg["category_dim"], hidden)
        self.attention = AdditiveAttention(hidden, cfg["attention_dim"])

    def forward(self, views: list[torch.Tensor], categories: torch.Tensor) -> torch.Tensor:
        vecs = [self.dropout(proj(view)) for proj, view in zip(self.views, views, strict=True)]
        if self.category is not None:
            vecs.append(torch.relu(self.category_proj(self.category(categories))))
        return self.attention(torch.stack(vecs, dim=1))


# id_optimizer="auto": above this many items a dense Adam step over the id table costs more
# than the rest of the model (3.2x naml's epoch at 50k items, nothing measurable at 3,000).
SPARSE_ID_ROWS = 20_000


def sparse_id_table(spec: ModelSpec) -> bool:
    """Whether the item-id table learns with sparse gradients (config id_optimizer)."""
    cfg = spec.config
    if cfg["id_optimizer"] == "auto":
        return spec.n_ids > SPARSE_ID_ROWS and cfg["weight_decay"] == 0.0
    return cfg["id_optimizer"] == "sparse"


class ItemIdFusion(nn.Module):
    """Hybrid item representation: the content vector plus a learned vector per item id seen in
    training (DropoutNet; the hybrid towers of two-tower retrieval).

    `sum`: v = c + e_id. `gated`: v = c + sigmoid(W c + b) * e_id, the content deciding per
    dimension how much the id adds. Ids are rows 0..n_ids-1; row `n_ids` stands for every item
    not seen in training, whose vector is the content vector exactly. In training each item's
    id is dropped with probability `id_dropout`, so the content encoder learns to score items
    on its own, as it must for new items.

    `only`: v = e_id, the content is not read (the id-only ablation of a hybrid: what the ids
    alone learn). Every item not seen in training shares row `n_ids`. The table starts from
    small random values: with zeros every item would start identical and no gradient could tell
    them apart. `id_dropout` keeps its meaning (a dropped id reads the shared row), but here a
    dropped item has nothing else to be scored by, so an id-only model should set it to 0; the
    shared row then keeps its initial near-zero values, a neutral score for every new item.
    """

    def __init__(self, spec: ModelSpec) -> None:
        super().__init__()
        cfg = spec.config
        hidden = cfg["hidden_dim"]
        self.unknown = spec.n_ids
        self.p = cfg["id_dropout"]
        self.only = cfg["id_embedding"] == "only"
        # Sparse gradients: a batch touches a few hundred rows of a table of tens of thousands
        # of items, and a dense Adam step would update every row every step (measured: hybrid
        # NAML 3x NAML's training time on a MIND-small-sized world); training.make_optimizer
        # gives sparse rows a lazy SparseAdam (config id_optimizer, presets.py).
        self.embedding = nn.Embedding(spec.n_ids + 1, hidden, sparse=sparse_id_table(spec))
        if self.only:
            nn.init.normal_(self.embedding.weight, std=0.02)
        else:
            # Zero init: an item starts as its content and moves away as its clicks teach it.
            nn.init.zeros_(self.embedding.weight)
        self.gate = nn.Linear(hidden, hidden) if cfg["id_embedding"] == "gated" else None

    def forward(self, content: torch.Tensor | None, ids: torch.Tensor) -> torch.Tensor:
        """content [N, H] (None for `only`, which does not read it), ids [N] (n_ids = unknown)
        -> [N, H]."""
        if self.training and self.p > 0:
            ids = ids.masked_fill(torch.rand(ids.shape) < self.p, self.unknown)
        if self.only:
            return self.embedding(ids)
        known = ids != self.unknown
        extra = self.embedding(ids)
        if self.gate is not None:
            extra = torch.sigmoid(self.gate(content)) * extra
        # where(), not a zero row: an unknown item's vector is the content vector bit for bit.
        return torch.where(known[:, None], content + extra, content)

    def extra_repr(self) -> str:
        return f"n_ids={self.unknown}, id_dropout={self.p}, only={self.only}"


def _category_embedding(spec: ModelSpec) -> nn.Embedding | None:
    if spec.config["category_dim"] <= 0:
        return None
    # +1: the last row stands for categories unknown at training time.
    return nn.Embedding(spec.n_categories + 1, spec.config["category_dim"])


# ---------------------------------------------------------------- user encoders
# Input: history item vectors [B, L, H] and a mask [B, L] (True = real item), most recent last;
# for encoders that read them, the bucketed day gap of each item to the one before (`gaps`
# [B, L], see training.history_gaps). Cold users (no history at all) get a learned "empty
# user" vector; subclasses only ever see rows with at least one real item, so no softmax runs
# over an all-masked row.

GAP_BUCKETS = 8  # 0 = no earlier item or unknown day; 1..7 = log2 buckets of the day gap


class UserEncoder(nn.Module):
    """Base: handles empty histories; subclasses implement `encode` on non-empty rows."""

    def __init__(self, spec: ModelSpec) -> None:
        super().__init__()
        self.empty_user = nn.Parameter(torch.randn(spec.config["hidden_dim"]) * 0.02)

    def forward(
        self, x: torch.Tensor, mask: torch.Tensor, gaps: torch.Tensor | None = None
    ) -> torch.Tensor:
        has_history = mask.any(dim=1)
        # Empty rows attend to their (zero) padding so the math stays finite; their output is
        # replaced by the empty-user vector below.
        safe_mask = mask | ~has_history[:, None]
        out = self.encode(x * safe_mask[..., None], safe_mask, gaps)
        return torch.where(has_history[:, None], out, self.empty_user.expand_as(out))

    def encode(
        self, x: torch.Tensor, mask: torch.Tensor, gaps: torch.Tensor | None = None
    ) -> torch.Tensor:
        raise NotImplementedError


class MeanUserEncoder(UserEncoder):
    """Masked mean of the history item vectors."""

    def encode(
        self, x: torch.Tensor, mask: torch.Tensor, gaps: torch.Tensor | None = None
    ) -> torch.Tensor:
        weights = mask.to(x.dtype)
        return (x * weights[..., None]).sum(1) / weights.sum(1, keepdim=True)


class AttentionUserEncoder(UserEncoder):
    """Additive attention pooling over the history (NAML's user encoder)."""

    def __init__(self, spec: ModelSpec) -> None:
        super().__init__(spec)
        self.attention = AdditiveAttention(spec.config["hidden_dim"], spec.config["attention_dim"])

    def encode(
        self, x: torch.Tensor, mask: torch.Tensor, gaps: torch.Tensor | None = None
    ) -> torch.Tensor:
        return self.attention(x, mask)


class MHSAUserEncoder(UserEncoder):
    """NRMS: multi-head self-attention over the history, then additive attention pooling."""

    def __init__(self, spec: ModelSpec) -> None:
        super().__init__(spec)
        cfg = spec.config
        hidden, heads = cfg["hidden_dim"], cfg["heads"]
        if hidden % heads:
            raise ValueError(f"hidden_dim={hidden} must be divisible by heads={heads}")
        self.heads = heads
        self.qkv = nn.Linear(hidden, 3 * hidden)
        self.out = nn.Linear(hidden, hidden)
        self.dropout = MaskDropout(cfg["dropout"])
        self.attention = AdditiveAttention(hidden, cfg["attention_dim"])

    def encode(
        self, x: torch.Tensor, mask: torch.Tensor, gaps: torch.Tensor | None = None
    ) -> torch.Tensor:
        b, n, d = x.shape
        q, k, v = self.qkv(self.dropout(x)).view(b, n, 3, self.heads, d // self.heads).unbind(2)
        q, k, v = (t.transpose(1, 2) for t in (q, k, v))  # [B, heads, L, d_head]
        # Dropout on the inputs and outputs of self-attention, as NRMS has it, not on the
        # attention weights: that keeps SDPA on its fused kernel in training too.
        attended = F.scaled_dot_product_attention(q, k, v, attn_mask=mask[:, None, None, :])
        h = self.out(attended.transpose(1, 2).reshape(b, n, d))
        return self.attention(self.dropout(h), mask)


class GRUUserEncoder(UserEncoder):
    """GRU over the history, oldest first; the last hidden state is the user vector."""

    def __init__(self, spec: ModelSpec) -> None:
        super().__init__(spec)
        hidden = spec.config["hidden_dim"]
        self.gru = nn.GRU(hidden, hidden, batch_first=True)

    def encode(
        self, x: torch.Tensor, mask: torch.Tensor, gaps: torch.Tensor | None = None
    ) -> torch.Tensor:
        # Move the real items to the front (keeping their order) so packing can skip padding
        # wherever it is; histories are left-padded in ImpressionData.
        order = torch.argsort((~mask).to(torch.int8), dim=1, stable=True)
        front = torch.gather(x, 1, order[..., None].expand_as(x))
        lengths = mask.sum(1).cpu()
        packed = nn.utils.rnn.pack_padded_sequence(
            front, lengths, batch_first=True, enforce_sorted=False
        )
        _, last = self.gru(packed)
        return last[-1]


class CausalBlock(nn.Module):
    """SASRec's block, pre-norm: causal multi-head self-attention and a position-wise
    feed-forward layer, each with dropout on its output and a residual connection."""

    def __init__(self, hidden: int, heads: int, dropout: float) -> None:
        super().__init__()
        self.heads = heads
        self.attn_norm = nn.LayerNorm(hidden)
        self.qkv = nn.Linear(hidden, 3 * hidden)
        self.out = nn.Linear(hidden, hidden)
        self.ff_norm = nn.LayerNorm(hidden)
        self.ff = nn.Sequential(nn.Linear(hidden, hidden), nn.ReLU(), nn.Linear(hidden, hidden))
        self.dropout = MaskDropout(dropout)

    def forward(self, h: torch.Tensor, allowed: torch.Tensor) -> torch.Tensor:
        """h [B, L, H], allowed [B, 1, L, L] (query i may read key j) -> [B, L, H]."""
        b, n, d = h.shape
        qkv = self.qkv(self.attn_norm(h)).view(b, n, 3, self.heads, d // self.heads)
        q, k, v = (t.transpose(1, 2) for t in qkv.unbind(2))  # [B, heads, L, d_head]
        attended = F.scaled_dot_product_attention(q, k, v, attn_mask=allowed)
        h = h + self.dropout(self.out(attended.transpose(1, 2).reshape(b, n, d)))
        return h + self.dropout(self.ff(self.ff_norm(h)))


class CausalUserEncoder(UserEncoder):
    """Sequential user encoder (SASRec-style): the history read in order, oldest first, by
    causal self-attention blocks (each click sees itself and earlier clicks), with a learned
    position per click counted back from the most recent one (and with config time_gaps, a
    learned vector per bucket of the day gap to the click before).

    The user vector (config readout): `attention` pools every click's output, a summary of the
    history up to that click, with additive attention that sees the positions, so it can favour
    recent clicks as much as the data asks; `last` is SASRec's most recent click's output (on
    the tests' world, whose histories have no order, small networks reached test AUC 0.60 with
    `last`, 0.66 with `attention`, the oracle 0.79). Padding changes nothing: positions count
    real clicks only and no click reads a padded slot."""

    def __init__(self, spec: ModelSpec) -> None:
        super().__init__(spec)
        cfg = spec.config
        hidden, heads = cfg["hidden_dim"], cfg["heads"]
        if hidden % heads:
            raise ValueError(f"hidden_dim={hidden} must be divisible by heads={heads}")
        self.positions = nn.Embedding(max(1, cfg["max_history"]), hidden)
        nn.init.normal_(self.positions.weight, std=0.02)
        self.gaps = None
        if cfg["time_gaps"]:
            self.gaps = nn.Embedding(GAP_BUCKETS, hidden)
            nn.init.normal_(self.gaps.weight, std=0.02)
        self.dropout = MaskDropout(cfg["dropout"])
        self.blocks = nn.ModuleList(
            CausalBlock(hidden, heads, cfg["dropout"]) for _ in range(cfg["layers"])
        )
        self.norm = nn.LayerNorm(hidden)
        self.pool = None
        if cfg["readout"] == "attention":
            self.pool = AdditiveAttention(hidden, cfg["attention_dim"])

    def encode(
        self, x: torch.Tensor, mask: torch.Tensor, gaps: torch.Tensor | None = None
    ) -> torch.Tensor:
        b, n, d = x.shape
        if n == 0:  # a batch of cold users only: each gets the empty-user vector
            return x.new_zeros(b, d)
        back = mask.flip(1).cumsum(1).flip(1) - 1  # 0 = the most recent click
        h = x + self.positions(back.clamp(0, self.positions.num_embeddings - 1))
        if self.gaps is not None:
            if gaps is None:
                raise ValueError("this encoder reads time gaps (config time_gaps): pass gaps")
            h = h + self.gaps(gaps)
        h = self.dropout(h)
        order = torch.arange(n)
        earlier = order[None, :] <= order[:, None]  # [query, key]
        # Padded queries read themselves only, so no softmax row is empty; no real click
        # reads them.
        allowed = (earlier[None] & mask[:, None, :]) | torch.eye(n, dtype=torch.bool)[None]
        for block in self.blocks:
            h = block(h, allowed[:, None])
        if self.pool is not None:
            return self.pool(self.norm(h), mask)
        last = (mask * order).argmax(dim=1)  # the most recent real click
        return self.norm(h.gather(1, last[:, None, None].expand(b, 1, d)).squeeze(1))


# ---------------------------------------------------------------- predictors


class DotPredictor(nn.Module):
    """Score = u . v."""

    def __init__(self, spec: ModelSpec) -> None:
        super().__init__()

    def forward(self, users: torch.Tensor, items: torch.Tensor) -> torch.Tensor:
        """users [B, H], items [B, C, H] -> [B, C]."""
        return torch.einsum("bh,bch->bc", users, items)

    def pool(
        self, users: torch.Tensor, items: torch.Tensor, out: torch.Tensor | None = None
    ) -> torch.Tensor:
        """users [U, H], items [P, H] -> [U, P] in one matrix multiply, written into `out`
        when given (a [U, P] float32 tensor: no second pass copying the result there)."""
        return torch.matmul(users, items.T, out=out)


class MLPPredictor(nn.Module):
    """Score = MLP([u, v, u * v])."""

    # Bound the [U, P, 3H] intermediate of `pool` (elements).
    POOL_CHUNK_ELEMENTS = 1 << 24

    def __init__(self, spec: ModelSpec) -> None:
        super().__init__()
        cfg = spec.config
        hidden = cfg["hidden_dim"]
        self.net = nn.Sequential(
            nn.Linear(3 * hidden, cfg["mlp_dim"]),
            nn.ReLU(),
            MaskDropout(cfg["dropout"]),
            nn.Linear(cfg["mlp_dim"], 1),
        )

    def forward(self, users: torch.Tensor, items: torch.Tensor) -> torch.Tensor:
        u = users[:, None, :].expand_as(items)
        return self.net(torch.cat([u, items, u * items], dim=-1)).squeeze(-1)

    def pool(
        self, users: torch.Tensor, items: torch.Tensor, out: torch.Tensor | None = None
    ) -> torch.Tensor:
        """users [U, H], items [P, H] -> [U, P], a bounded number of users at a time, written
        into `out` when given."""
        per_user = max(1, items.shape[0] * items.shape[1] * 3)
        step = max(1, self.POOL_CHUNK_ELEMENTS // per_user)
        if out is None:
            out = users.new_empty(len(users), len(items))
        for s in range(0, len(users), step):
            part = users[s : s + step]
            out[s : s + step] = self.forward(part, items[None].expand(len(part), -1, -1))
        return out


# ---------------------------------------------------------------- GENRE profile plug-in


class ProfileFusion(nn.Module):
    """GENRE user-profile plug-in: concat [u, profile * has_profile, has_profile] and project
    back to hidden size. Users without a profile contribute a zero vector and a 0 flag."""

    def __init__(self, hidden: int, profile_dim: int) -> None:
        super().__init__()
        self.proj = nn.Linear(hidden + profile_dim + 1, hidden)

    def forward(
        self, users: torch.Tensor, profile: torch.Tensor, has: torch.Tensor
    ) -> torch.Tensor:
        flag = has.to(users.dtype)[:, None]
        return self.proj(torch.cat([users, profile * flag, flag], dim=-1))


# ---------------------------------------------------------------- registry and the model

ITEM_ENCODERS: dict[str, type[nn.Module]] = {
    "linear": LinearItemEncoder,
    "multiview": MultiViewItemEncoder,
}
USER_ENCODERS: dict[str, type[UserEncoder]] = {
    "mean": MeanUserEncoder,
    "attention": AttentionUserEncoder,
    "mhsa": MHSAUserEncoder,
    "gru": GRUUserEncoder,
    "causal": CausalUserEncoder,
}
PREDICTORS: dict[str, type[nn.Module]] = {
    "dot": DotPredictor,
    "mlp": MLPPredictor,
}


@dataclass(frozen=True)
class ModelSpec:
    """Everything needed to rebuild the module: the resolved config plus data shapes."""

    config: dict[str, Any]
    field_dims: tuple[int, ...]
    n_categories: int
    profile_dim: int | None = None
    n_ids: int = 0  # item ids with a learned vector (config id_embedding != "none")


class NewsRecommender(nn.Module):
    """item encoder (+ optional id fusion) x user encoder x predictor (+ optional profile
    fusion)."""

    def __init__(self, spec: ModelSpec) -> None:
        super().__init__()
        cfg = spec.config
        self.item_encoder = _lookup(ITEM_ENCODERS, cfg["item_encoder"], "item_encoder")(spec)
        self.user_encoder = _lookup(USER_ENCODERS, cfg["user_encoder"], "user_encoder")(spec)
        self.predictor = _lookup(PREDICTORS, cfg["predictor"], "predictor")(spec)
        self.profile = (
            ProfileFusion(cfg["hidden_dim"], spec.profile_dim) if spec.profile_dim else None
        )
        self.item_ids = ItemIdFusion(spec) if cfg["id_embedding"] != "none" else None
        self.text_top = None
        if cfg["text_encoder"] == "tuned":
            from genre_dagster.scoring.tuned_text import TextTop

            self.text_top = TextTop(cfg)

    def encode_items(
        self,
        views: list[torch.Tensor],
        categories: torch.Tensor,
        ids: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """Item vectors [N, H]. With id fusion, `ids` are the items' id rows; without `ids`
        every item is encoded from its content alone (the path of items never seen). A view is
        a vector per item, or with the fine-tuned text encoder the items' token states, which
        its top layers turn into vectors here. An id-only model (id_embedding="only") encodes
        no content: it needs `ids`."""
        if self.item_ids is not None and self.item_ids.only:
            if ids is None:
                raise ValueError("an id-only model (id_embedding='only') has no content path")
            return self.item_ids(None, ids)
        if any(isinstance(v, TokenStates) for v in views):
            if self.text_top is None:
                raise ValueError("token states reach a model without text_encoder='tuned'")
            views = [self.text_top(v) if isinstance(v, TokenStates) else v for v in views]
        content = self.item_encoder(views, categories)
        if self.item_ids is None or ids is None:
            return content
        return self.item_ids(content, ids)

    def encode_users(
        self,
        history_vecs: torch.Tensor,
        mask: torch.Tensor,
        profile: torch.Tensor | None = None,
        has_profile: torch.Tensor | None = None,
        gaps: torch.Tensor | None = None,
    ) -> torch.Tensor:
        users = self.user_encoder(history_vecs, mask, gaps)
        if self.profile is not None:
            if profile is None or has_profile is None:
                raise ValueError("this model fuses user profiles: pass profile and has_profile")
            users = self.profile(users, profile, has_profile)
        return users


def _lookup(registry: dict[str, Any], name: str, what: str) -> Any:
    if name not in registry:
        raise ValueError(f"unknown {what} {name!r}; known: {sorted(registry)}")
    return registry[name]


def build_model(spec: ModelSpec) -> NewsRecommender:
    """Build the module named by `spec.config` (raises ValueError for unknown names)."""
    return NewsRecommender(spec)
