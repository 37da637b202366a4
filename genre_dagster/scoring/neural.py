"""Neural news recommenders (NRMS, NAML, any composition) as Scorers.

A model is item encoder x user encoder x predictor, chosen by name in the config (see
`presets.py` for the names and defaults, `components.py` for the parts). Items are represented by
precomputed text embeddings (ItemFeatures.embeddings), so the "news encoder" is a small network
on top of cached vectors, as in Legommenders' cached-LLM mode.

This module does NOT import torch at the top: torch (and components/training, which import it)
load inside the methods that need them, so importing the scorer classes is cheap.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar

import numpy as np

from genre_dagster.arrays import PAD, ImpressionData, ItemFeatures, ProfileRows
from genre_dagster.scoring.base import Scorer
from genre_dagster.scoring.presets import (
    PRESET_KINDS,
    PRESETS,
    compact_config,
    resolve_neural_config,
)

if TYPE_CHECKING:
    import torch

    from genre_dagster.scoring.components import NewsRecommender
    from genre_dagster.scoring.training import ItemInputs

FORMAT_VERSION = 1
_ITEM_CHUNK = 8192  # items encoded per forward pass at inference
_TUNED_ITEM_CHUNK = 1024  # the same with the fine-tuned text encoder ([N, tokens, dim] states)
_PAIR_CHUNK = 65536  # (user, candidate) pairs per predictor call in `score`


@dataclass
class UserProfiles:
    """GENRE user profiles: one vector per user (topics/regions embedded and mean-pooled).

    Users absent from `user_ids` (or with a NaN row) have no profile: the model sees a zero
    vector and a "no profile" flag for them.
    """

    user_ids: np.ndarray
    vectors: np.ndarray

    def __post_init__(self) -> None:
        self.vectors = np.asarray(self.vectors, dtype=np.float32)
        if self.vectors.ndim != 2 or len(self.vectors) != len(self.user_ids):
            raise ValueError(
                f"profile vectors must be [n_users={len(self.user_ids)}, dim], "
                f"got {self.vectors.shape}"
            )
        self._row = {str(u): i for i, u in enumerate(self.user_ids)}
        if len(self._row) != len(self.user_ids):
            raise ValueError("UserProfiles.user_ids contains duplicates")
        # validated once: a partly-NaN row is an error, an all-NaN row a user without profile
        self._rows = ProfileRows.from_dense(
            *_with_missing(self.vectors, np.ones(len(self.vectors), bool))
        )

    @property
    def dim(self) -> int:
        return self.vectors.shape[1]

    def profile_rows(self, user_ids: np.ndarray) -> ProfileRows:
        """The profiles of `user_ids` as rows referring to this table (no copy per row);
        users without a profile refer to its zero row."""
        missing = len(self.user_ids)  # a user without a row: the zero row, appended below
        index = np.fromiter(
            (self._row.get(str(u), missing) for u in user_ids), np.int64, len(user_ids)
        )
        table_rows = np.append(self._rows.index, len(self._rows.table) - 1)
        return ProfileRows(self._rows.table, table_rows[index])

    def rows_for(self, user_ids: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(vectors [n, dim], has_profile [n]) for `user_ids`; missing users get zeros."""
        return self.profile_rows(user_ids).dense()


ProfileInput = UserProfiles | np.ndarray | None
"""UserProfiles (looked up by user id) or a row-aligned float matrix whose NaN rows are missing."""


def _with_missing(vectors: np.ndarray, has: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    nan_rows = np.isnan(vectors)
    if (nan_rows.any(axis=1) & ~nan_rows.all(axis=1)).any():
        raise ValueError("a profile row is partly NaN: mark a missing profile with an all-NaN row")
    has = has & ~nan_rows.all(axis=1)
    vectors = np.where(has[:, None], vectors, 0.0).astype(np.float32)
    return vectors, has


class NeuralScorer(Scorer):
    """Any item encoder x user encoder x predictor composition, trained on impressions.

    `config` is merged over the class preset (none for the generic class) and the defaults in
    `presets.DEFAULTS`; the resolved config (in its compact form, `presets.compact_config`) is
    what the scorer id hashes.
    """

    kind: ClassVar[str] = "neural"
    preset_name: ClassVar[str | None] = None
    # Config values that define the architecture of a subclass (e.g. NRMS = mhsa user encoder).
    defining: ClassVar[dict[str, str]] = {}

    def __init__(self, config: dict[str, Any] | None = None) -> None:
        base = dict(PRESETS[self.preset_name]) if self.preset_name else {}
        resolved = resolve_neural_config({**base, **(config or {})})
        for key, value in self.defining.items():
            if resolved[key] != value:
                raise ValueError(
                    f"{type(self).__name__} needs {key}={value!r}, got {resolved[key]!r}; "
                    "use NeuralScorer for other compositions"
                )
        super().__init__(compact_config(resolved))
        self._resolved = resolved  # every key, for the model and the trainer
        self._model: NewsRecommender | None = None
        self._meta: dict[str, Any] | None = None
        self._id_rows: dict[str, int] | None = None  # item id -> id row (id fusion)
        self._content_only = False
        self._text_memo: Any = None  # tuned text vectors per text hash (tuned_text.TextVectorMemo)
        self.training_log: dict[str, Any] | None = None

    # ------------------------------------------------------------ training

    def fit(
        self,
        train: ImpressionData,
        items: ItemFeatures,
        valid: ImpressionData | None = None,
        *,
        profiles: ProfileInput = None,
        valid_profiles: ProfileInput = None,
    ) -> dict[str, Any]:
        """Train (seeded, deterministic on CPU for a fixed thread count); return the log.

        `profiles` feeds the GENRE profile plug-in (required iff config["profile"]): a
        UserProfiles serves train and valid; a row-aligned matrix needs `valid_profiles` too.
        """
        import torch

        from genre_dagster.scoring.components import ModelSpec, build_model
        from genre_dagster.scoring.training import train_model

        cfg = self._resolved
        self._model = None  # a failed re-fit must not leave the old model with new metadata
        self._check_profiles_given(profiles)
        if valid_profiles is not None:
            self._check_profiles_given(valid_profiles)
        tuned = cfg["text_encoder"] == "tuned"
        # the tuned text encoder reads the texts' layer states, the frozen one their vectors
        available = (items.layer_states or {}) if tuned else items.embeddings
        what = "layer-state" if tuned else "embedding"
        fields = [*cfg["fields"]]
        fields += [f for f in cfg["optional_fields"] if f in available and f not in fields]
        missing = [f for f in fields if f not in available]
        if missing:
            raise ValueError(
                f"{self.scorer_id}: {what} fields {missing} not in items "
                f"(available: {sorted(available)})"
            )
        profile_dim = None
        if cfg["profile"]:
            profile_dim = _profile_dim(profiles)
        synthetic = np.asarray(items.is_synthetic, dtype=bool)
        item_ids = None
        if cfg["id_embedding"] != "none":
            item_ids = _ids_seen_in(train, items.item_ids, synthetic)
        self._meta = {
            "fields": fields,
            "item_dim": {f: _field_dim(available[f]) for f in fields},
            "category_names": [str(c) for c in items.category_names],
            "profile_dim": profile_dim,
            "item_ids": item_ids,
            "lm_model_id": None,
        }
        self._set_id_rows(item_ids)
        spec = ModelSpec(
            config=cfg,
            field_dims=tuple(self._meta["item_dim"][f] for f in fields),
            n_categories=len(items.category_names),
            profile_dim=profile_dim,
            n_ids=len(item_ids or ()),
        )
        inputs = self._item_inputs(items, training=True)
        train_profile = self._profile_rows(profiles, train.user_ids, "train")
        validate = None
        if valid is not None:
            if isinstance(profiles, UserProfiles) and valid_profiles is None:
                valid_profiles = profiles
            valid_rows = self._profile_rows(valid_profiles, valid.user_ids, "valid")
            validate = self._validator(valid, items, inputs, valid_rows)

        random_pool = np.flatnonzero(~synthetic)
        with torch.random.fork_rng(devices=[]):  # seed without touching the caller's RNG
            torch.manual_seed(cfg["seed"])
            model = build_model(spec)
            if tuned:
                for field, states in zip(fields, inputs.views, strict=True):
                    model.text_top.check_states(field, states)
                self._meta["lm_model_id"] = model.text_top.source.model
            log = train_model(model, train, inputs, random_pool, cfg, train_profile, validate)
        self._model = model
        self.training_log = {"scorer_id": self.scorer_id, "fields": fields, **log}
        # impressions the epochs validated on when that was a sample of `valid` (else 0)
        cap = cfg["valid_impressions"]
        sampled = valid is not None and cap and valid.n_impressions > cap
        self.training_log["valid_sample"] = int(cap) if sampled else 0
        if tuned:
            # Serving: every item's tuned text vectors once, reused by each later score.
            start = time.perf_counter()
            self._item_inputs(items)
            self.training_log["text_vectors_seconds"] = time.perf_counter() - start
        return self.training_log

    # ------------------------------------------------------------ scoring

    def score(
        self, data: ImpressionData, items: ItemFeatures, *, profiles: ProfileInput = None
    ) -> np.ndarray:
        """Score every candidate of `data`: float32 aligned with data.cand_items."""
        model = self._require_model()
        self._check_profiles_given(profiles)
        rows = self._profile_rows(profiles, data.user_ids, "data")
        return self._score_with(model, data, items, self._item_inputs(items), rows)

    def score_pool(
        self,
        history: np.ndarray,
        pool: np.ndarray,
        items: ItemFeatures,
        *,
        profiles: ProfileInput = None,
        user_ids: np.ndarray | None = None,
    ) -> np.ndarray:
        """Score users (padded histories) against item indices `pool`: float32 [n_users, n_pool].

        With the profile plug-in, pass `profiles` as a matrix aligned with `history` rows, or a
        UserProfiles plus the `user_ids` of those rows.
        """
        return self.pool_scorer(pool, items)(history, profiles=profiles, user_ids=user_ids)

    def pool_scorer(self, pool: np.ndarray, items: ItemFeatures):
        """`score_pool` against a fixed pool: the pool's vectors are encoded once, and every
        item vector a history needs is encoded once and kept for the next calls (the lists
        score a million users a few thousand at a time, over the same pool and mostly the
        same history items)."""
        import torch

        model = self._require_model()
        pool = np.asarray(pool, dtype=np.int64)
        with torch.inference_mode(), _eval(model):
            inputs = self._item_inputs(items)
            memo = _ItemVectors(
                lambda index: self._item_vectors(model, inputs, index), items.n_items
            )
            pool_vecs = memo.get(pool)

        def score(
            history: np.ndarray,
            *,
            profiles: ProfileInput = None,
            user_ids: np.ndarray | None = None,
        ) -> np.ndarray:
            self._check_profiles_given(profiles)
            history = np.asarray(history, dtype=np.int64)
            if user_ids is None and isinstance(profiles, UserProfiles):
                raise ValueError(
                    "score_pool with UserProfiles needs the user_ids of the history rows"
                )
            if user_ids is not None and len(user_ids) != len(history):
                raise ValueError(f"user_ids has {len(user_ids)} rows, history has {len(history)}")
            row_ids = user_ids if user_ids is not None else np.arange(len(history))
            rows = self._profile_rows(profiles, row_ids, "users")
            out = np.empty((len(history), len(pool)), dtype=np.float32)
            with torch.inference_mode(), _eval(model):
                users = self._user_vectors(model, history, inputs, rows, memo)
                step = self._resolved["score_batch"]
                for s in range(0, len(users), step):
                    block = torch.from_numpy(out[s : s + step])  # written in place
                    model.predictor.pool(users[s : s + step], pool_vecs, out=block)
            return out

        return score

    def _score_with(
        self,
        model: NewsRecommender,
        data: ImpressionData,
        items: ItemFeatures,
        inputs: ItemInputs,
        rows: ProfileRows | None,
    ) -> np.ndarray:
        import torch

        out = np.empty(len(data.cand_items), dtype=np.float32)
        with torch.inference_mode(), _eval(model):
            users = self._user_vectors(model, data.history, inputs, rows)
            unique = np.unique(data.cand_items)
            item_vecs = self._item_vectors(model, inputs, unique)
            imp = torch.from_numpy(data.candidate_impression)
            pos = torch.from_numpy(np.searchsorted(unique, data.cand_items))
            for s in range(0, len(out), _PAIR_CHUNK):
                u = users[imp[s : s + _PAIR_CHUNK]]
                v = item_vecs[pos[s : s + _PAIR_CHUNK], None, :]
                out[s : s + _PAIR_CHUNK] = model.predictor(u, v)[:, 0].numpy()
        return out

    def _validator(
        self,
        valid: ImpressionData,
        items: ItemFeatures,
        inputs: ItemInputs,
        rows: ProfileRows | None,
    ) -> Callable[[NewsRecommender], dict[str, float | int]]:
        """MIND metrics of the model on the labeled candidates of `valid` (checked up front):
        on at most `valid_impressions` of them, a sample seeded by the config's seed."""
        from genre_dagster.evaluation.metrics import evaluate

        cap = self._resolved["valid_impressions"]
        if cap and valid.n_impressions > cap:
            rng = np.random.default_rng(self._resolved["seed"])
            sample = np.sort(rng.choice(valid.n_impressions, cap, replace=False))
            valid = valid.take(sample)
            if rows is not None:
                rows = rows.take(sample)
        labeled = valid.labels >= 0
        imp = valid.candidate_impression[labeled]
        clicks = np.bincount(imp, weights=valid.labels[labeled] == 1, minlength=valid.n_impressions)
        counts = np.bincount(imp, minlength=valid.n_impressions)
        if not ((clicks > 0) & (clicks < counts)).any():
            raise ValueError("valid has no impression with both a clicked and a non-clicked item")

        def validate(model: NewsRecommender) -> dict[str, float | int]:
            scores = self._score_with(model, valid, items, inputs, rows)
            return evaluate(imp, valid.labels[labeled], scores[labeled])

        return validate

    def _item_vectors(
        self, model: NewsRecommender, inputs: ItemInputs, index: np.ndarray
    ) -> torch.Tensor:
        """Encode items `index` once, in chunks -> [len(index), H]."""
        import torch

        index_t = torch.from_numpy(np.ascontiguousarray(index, dtype=np.int64))
        step = _ITEM_CHUNK if model.text_top is None else _TUNED_ITEM_CHUNK
        chunks = [
            model.encode_items(*inputs.take(index_t[s : s + step]))
            for s in range(0, len(index_t), step)
        ]
        if not chunks:
            return torch.zeros(0, self._resolved["hidden_dim"])
        return torch.cat(chunks)

    def _user_vectors(
        self,
        model: NewsRecommender,
        history: np.ndarray,
        inputs: ItemInputs,
        rows: ProfileRows | None,
        memo: _ItemVectors | None = None,
    ) -> torch.Tensor:
        """User vectors [n_rows, H]: history items encoded once (taken from `memo` when given),
        each distinct user input (a user's impressions share one history) encoded once, users
        in chunks of similar history length.

        Each user is encoded on its own, so the chunks change no vector (up to float rounding).
        Sorting users by history length lets each chunk drop the padding columns all of its
        rows share (`trim_history`): in MIND-like data most histories are far shorter than
        `max_history`, and chunks of users in arrival order nearly always hold one full
        history, so every chunk would run the encoder over all `max_history` positions."""
        import torch

        from genre_dagster.scoring.training import (
            history_gaps,
            take_rows,
            trim_history,
            user_input_key,
        )
        from genre_dagster.scoring.user_profile import distinct_rows

        history = trim_history(np.asarray(history, dtype=np.int64), self._resolved["max_history"])
        first, inverse = distinct_rows(user_input_key(history, rows))
        # shortest histories first; `slot[d]` = where distinct input d is encoded
        order = np.argsort((history != PAD).sum(axis=1)[first], kind="stable")
        slot = np.empty_like(order)
        slot[order] = np.arange(len(order))
        first = first[order]
        history = history[first]
        if rows is not None:
            rows = rows.take(first)
        unique = np.unique(history[history != PAD])
        if memo is not None:
            table = memo.get(unique)
        else:
            table = self._item_vectors(model, inputs, unique)
        table = torch.cat([table, table.new_zeros(1, table.shape[1])])  # last row = padding
        step = self._resolved["score_batch"]
        chunks = []
        for s in range(0, len(history), step):
            hist = trim_history(history[s : s + step], self._resolved["max_history"])
            mask = hist != PAD
            pos = np.where(mask, np.searchsorted(unique, hist), len(unique))
            prof = has = gaps = None
            if rows is not None:
                prof, has = (torch.from_numpy(a) for a in rows.take(slice(s, s + step)).dense())
            if inputs.days is not None:
                gaps = torch.from_numpy(history_gaps(hist, inputs.days))
            users = model.encode_users(
                take_rows(table, pos), torch.from_numpy(mask), prof, has, gaps
            )
            chunks.append(users)
        if not chunks:
            return torch.zeros(0, self._resolved["hidden_dim"])
        return torch.cat(chunks).index_select(0, torch.from_numpy(slot[inverse]))

    # ------------------------------------------------------------ inputs

    def _item_inputs(self, items: ItemFeatures, training: bool = False) -> ItemInputs:
        """Tensors of the fitted fields (dims checked) and categories in the model's vocabulary.

        With the tuned text encoder the views are the items' layer states while `training` (the
        top layers run per batch) and, after training, the tuned vectors (computed once)."""
        import torch

        from genre_dagster.scoring.training import ItemInputs

        meta = self._require_meta()
        if self._resolved["text_encoder"] == "tuned":
            views = self._text_views(items, training)
        else:
            views = self._embedding_views(items)
        # Category indices are re-mapped by name: another ItemFeatures may order its vocabulary
        # differently; names unseen at training time go to the model's "unknown" row.
        vocab = {name: i for i, name in enumerate(meta["category_names"])}
        unknown = len(vocab)
        remap = np.array([vocab.get(str(c), unknown) for c in items.category_names], np.int64)
        categories = remap[np.asarray(items.categories, dtype=np.int64)]
        ids = None
        if self._id_rows is not None and not self._content_only:
            unknown = len(self._id_rows)
            rows = (self._id_rows.get(str(item), unknown) for item in items.item_ids)
            ids = torch.from_numpy(np.fromiter(rows, dtype=np.int64, count=items.n_items))
        days = None
        if self._resolved["time_gaps"]:
            known = items.publish_day is not None
            days = items.publish_day if known else np.full(items.n_items, np.nan)
        return ItemInputs(views, torch.from_numpy(categories), ids, days)

    def _embedding_views(self, items: ItemFeatures) -> list[Any]:
        meta = self._require_meta()
        views = []
        for field in meta["fields"]:
            if field not in items.embeddings:
                raise ValueError(f"{self.scorer_id}: items lack embedding field {field!r}")
            matrix = np.ascontiguousarray(items.embeddings[field], dtype=np.float32)
            if matrix.shape[1] != meta["item_dim"][field]:
                raise ValueError(
                    f"{self.scorer_id}: field {field!r} has dim {matrix.shape[1]}, "
                    f"the model was trained on {meta['item_dim'][field]}"
                )
            views.append(_shared_tensor(matrix))
        return views

    def _text_views(self, items: ItemFeatures, training: bool) -> list[Any]:
        fields = self._require_meta()["fields"]
        states = items.layer_states or {}
        missing = [f for f in fields if f not in states]
        if missing:
            raise ValueError(
                f"{self.scorer_id}: items lack the layer states of fields {missing}, which its "
                "tuned text encoder reads (ItemFeatures.layer_states; embedding/layer_cache.py)"
            )
        if training:
            return [states[f] for f in fields]
        from genre_dagster.scoring.tuned_text import TextVectorMemo

        model = self._require_model()
        if self._text_memo is None:
            self._text_memo = TextVectorMemo()
        with _eval(model):
            return self._text_memo.views(model.text_top, fields, states)

    def _set_id_rows(self, item_ids: list[str] | None) -> None:
        self._id_rows = None if item_ids is None else {x: i for i, x in enumerate(item_ids)}

    def content_only(self) -> NeuralScorer:
        """This model reading no item id: every item is scored from its content, as items never
        seen in training are (the hybrid's cold-item path, an ablation for benchmarks). It shares
        the weights and is not an artifact: `save` refuses it. An id-only model has no content
        path to view."""
        import copy

        self._require_model()
        if self._resolved["id_embedding"] == "only":
            raise ValueError(f"{self.scorer_id} reads item ids only (id_embedding='only')")
        view = copy.copy(self)
        view._content_only = True
        return view

    def _check_profiles_given(self, profiles: ProfileInput) -> None:
        if self._resolved["profile"] and profiles is None:
            raise ValueError(
                f"{self.scorer_id} uses the GENRE profile plug-in: pass profiles "
                "(UserProfiles or a row-aligned matrix; missing users are allowed)"
            )
        if not self._resolved["profile"] and profiles is not None:
            raise ValueError(f"{self.scorer_id} has config profile=False but profiles were passed")

    def _profile_rows(
        self, profiles: ProfileInput, user_ids: np.ndarray, what: str
    ) -> ProfileRows | None:
        if not self._resolved["profile"]:
            return None
        if profiles is None:
            raise ValueError(f"{self.scorer_id}: profiles for {what} are missing")
        if isinstance(profiles, UserProfiles):
            rows = profiles.profile_rows(user_ids)
        else:
            matrix = np.asarray(profiles, dtype=np.float32)
            if matrix.ndim != 2 or len(matrix) != len(user_ids):
                raise ValueError(
                    f"{self.scorer_id}: profile matrix for {what} must be "
                    f"[{len(user_ids)}, dim], got {matrix.shape}"
                )
            rows = ProfileRows.from_dense(*_with_missing(matrix, np.ones(len(matrix), bool)))
        expected = self._require_meta()["profile_dim"]
        if rows.table.shape[1] != expected:
            raise ValueError(
                f"{self.scorer_id}: profile dim {rows.table.shape[1]} != trained dim {expected}"
            )
        return rows

    def _require_model(self) -> NewsRecommender:
        if self._model is None:
            raise ValueError(f"{self.scorer_id} is not fitted: call fit() or load() first")
        return self._model

    def _require_meta(self) -> dict[str, Any]:
        if self._meta is None:
            raise ValueError(f"{self.scorer_id} is not fitted: call fit() or load() first")
        return self._meta

    # ------------------------------------------------------------ artifacts

    def save(self, folder: Path) -> None:
        """Write scorer.json (kind, config, scorer_id, fields, dims, vocab, log) and model.pt."""
        import torch

        model = self._require_model()
        if self._content_only:
            raise ValueError(f"{self.scorer_id}: a content_only() view is not saved")
        folder = Path(folder)
        folder.mkdir(parents=True, exist_ok=True)
        manifest = {
            "format_version": FORMAT_VERSION,
            "kind": self.kind,
            "scorer_id": self.scorer_id,
            "config": self.config,
            **self._require_meta(),
            "training_log": self.training_log,
        }
        (folder / "scorer.json").write_text(json.dumps(manifest, indent=2, default=float))
        state = model.state_dict()
        if model.text_top is not None:
            from genre_dagster.scoring.tuned_text import frozen_keys

            # the language model's own weights are rebuilt from its folder at load time
            frozen = frozen_keys(model)
            state = {k: v for k, v in state.items() if k not in frozen}
        torch.save(state, folder / "model.pt")

    @classmethod
    def load(cls, folder: Path) -> NeuralScorer:
        """Rebuild the module from scorer.json and load model.pt (scores are identical)."""
        import torch

        from genre_dagster.scoring.components import ModelSpec, build_model

        folder = Path(folder)
        manifest = json.loads((folder / "scorer.json").read_text())
        kind = manifest.get("kind")
        klass = NEURAL_SCORERS.get(kind)
        if klass is None or (cls is not NeuralScorer and klass is not cls):
            raise ValueError(f"{folder}: artifact kind {kind!r} cannot be loaded by {cls.__name__}")
        if manifest.get("format_version") != FORMAT_VERSION:
            raise ValueError(
                f"{folder}: unsupported format_version {manifest.get('format_version')}"
            )
        scorer = klass(manifest["config"])
        if scorer.scorer_id != manifest["scorer_id"]:
            raise ValueError(
                f"{folder}: config resolves to {scorer.scorer_id}, artifact says "
                f"{manifest['scorer_id']} (defaults changed since it was saved?)"
            )
        scorer._meta = {
            key: manifest[key] for key in ("fields", "item_dim", "category_names", "profile_dim")
        }
        # absent from artifacts saved before id fusion / the tuned text encoder existed
        scorer._meta["item_ids"] = manifest.get("item_ids")
        scorer._meta["lm_model_id"] = manifest.get("lm_model_id")
        scorer._set_id_rows(scorer._meta["item_ids"])
        spec = ModelSpec(
            config=scorer._resolved,
            field_dims=tuple(manifest["item_dim"][f] for f in manifest["fields"]),
            n_categories=len(manifest["category_names"]),
            profile_dim=manifest["profile_dim"],
            n_ids=len(scorer._meta["item_ids"] or ()),
        )
        model = build_model(spec)
        state = torch.load(folder / "model.pt", weights_only=True)
        if model.text_top is None:
            model.load_state_dict(state)
        else:
            from genre_dagster.scoring.tuned_text import load_trained

            if model.text_top.source.model != manifest["lm_model_id"]:
                raise ValueError(
                    f"{folder}: trained on top of {manifest['lm_model_id']}, but the configured "
                    f"model folder holds {model.text_top.source.model}: restore that model"
                )
            load_trained(model, state)
        model.eval()
        scorer._model = model
        scorer.training_log = manifest.get("training_log")
        return scorer


class NRMSScorer(NeuralScorer):
    """NRMS: multi-head self-attention user encoder over item vectors, dot-product predictor."""

    kind: ClassVar[str] = "nrms"
    preset_name: ClassVar[str | None] = "nrms"
    defining: ClassVar[dict[str, str]] = {"user_encoder": "mhsa"}


class NAMLScorer(NeuralScorer):
    """NAML: multi-view item encoder (fields + category, attention across views), attention
    user encoder, dot-product predictor."""

    kind: ClassVar[str] = "naml"
    preset_name: ClassVar[str | None] = "naml"
    defining: ClassVar[dict[str, str]] = {"item_encoder": "multiview"}


class SequentialScorer(NeuralScorer):
    """Sequential recommender (SASRec-style): the history read in order by causal
    self-attention with learned positions, over hybrid item vectors (NAML's multi-view content
    vector + a learned id vector)."""

    kind: ClassVar[str] = "sequential"
    preset_name: ClassVar[str | None] = "sequential"
    defining: ClassVar[dict[str, str]] = {"user_encoder": "causal"}


NEURAL_SCORERS: dict[str, type[NeuralScorer]] = {
    "neural": NeuralScorer,
    "nrms": NRMSScorer,
    "naml": NAMLScorer,
    "sequential": SequentialScorer,
}


def from_preset(name: str, **overrides: Any) -> NeuralScorer:
    """The scorer that runs preset `name` (e.g. "nrms_genre" -> an NRMSScorer with profiles)."""
    if name not in PRESETS:
        raise ValueError(f"unknown neural preset {name!r}; known: {sorted(PRESETS)}")
    return NEURAL_SCORERS[PRESET_KINDS[name]]({**PRESETS[name], **overrides})


def _field_dim(view: Any) -> int:
    """Width of a field's item input: an embedding matrix's columns or layer states' dim."""
    return int(view.dim if hasattr(view, "gather") else view.shape[1])


def _ids_seen_in(train: ImpressionData, item_ids: np.ndarray, synthetic: np.ndarray) -> list[str]:
    """Ids of the items the train split shows (histories and candidates) that get a learned
    vector: GENRE's synthetic items are left out (each belongs to one user's history)."""
    history = train.history[train.history != PAD]
    seen = np.unique(np.concatenate([history, train.cand_items]).astype(np.int64))
    return [str(item) for item in np.asarray(item_ids)[seen[~synthetic[seen]]]]


def _profile_dim(profiles: ProfileInput) -> int:
    if isinstance(profiles, UserProfiles):
        return profiles.dim
    matrix = np.asarray(profiles)
    if matrix.ndim != 2:
        raise ValueError(f"profile matrix must be 2-D, got shape {matrix.shape}")
    return int(matrix.shape[1])


class _ItemVectors:
    """Item vectors encoded on first use and kept, by item row: a pool scorer's calls share
    the pool and most history items. Holds at most [n_items, H] floats (MIND-large's 166k
    news at the default H=128: 85 MB)."""

    def __init__(self, encode: Callable[[np.ndarray], torch.Tensor], n_items: int) -> None:
        self._encode, self._n_items = encode, n_items
        self._done = np.zeros(n_items, dtype=bool)
        self._table: torch.Tensor | None = None

    def get(self, index: np.ndarray) -> torch.Tensor:
        """Vectors of item rows `index` (any order, repeats allowed) -> [len(index), H]."""
        import torch

        index = np.asarray(index, dtype=np.int64)
        missing = np.unique(index[~self._done[index]])
        if len(missing):
            vectors = self._encode(missing)
            if self._table is None:
                self._table = vectors.new_zeros(self._n_items, vectors.shape[1])
            self._table[torch.from_numpy(missing)] = vectors
            self._done[missing] = True
        if self._table is None:  # nothing asked for yet: no width known
            return self._encode(index)
        return self._table[torch.from_numpy(index)]


@contextmanager
def _eval(model: NewsRecommender) -> Iterator[None]:
    """Put `model` in eval mode (no dropout) and restore its previous mode afterwards."""
    was_training = model.training
    model.eval()
    try:
        yield
    finally:
        model.train(was_training)


def _shared_tensor(matrix: np.ndarray) -> Any:
    """A tensor over `matrix` without a copy. Item embeddings often arrive zero-copy from Arrow,
    read-only; the model only reads its item views, so sharing that memory is safe and torch's
    warning about writing to it does not apply (a copy would double the largest array)."""
    import warnings

    import torch

    if matrix.flags.writeable:
        return torch.from_numpy(matrix)
    with warnings.catch_warnings():
        warnings.filterwarnings(
            "ignore", message="The given NumPy array is not writable", category=UserWarning
        )
        return torch.from_numpy(matrix)
