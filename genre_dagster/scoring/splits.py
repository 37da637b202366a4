"""What the train / validation / test split holds, day by day, and what to change when a split
is empty: read by the blocking check on `impression_splits` and by every scorer before it trains.

`plan_splits` applies the rule of dbt's `impression_splits` model to impression counts per day,
in Python: `genre-dagster run` prints that plan and stops on an empty split before any work
(tests/test_splits.py checks that the two implementations agree).
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import date

from genre_dagster.warehouse import IMPRESSION_SPLITS

SPLITS = ("train", "validation", "test")
# Where the boundaries are set: the launchpad config of the dbt step (or dbt_project.yml vars).
SETTINGS_HINT = (
    "set the split boundaries in the launchpad config of the features step "
    "(ops: dbt_features: config: validation_start / test_start as YYYY-MM-DD, or "
    "validation_days / test_days / holdout_share), or add labelled days"
)
# The same settings as flags of `genre-dagster run`.
CLI_HINT = (
    "pass --validation-start / --test-start YYYY-MM-DD, --validation-days / --test-days N or "
    "--holdout-share to `genre-dagster run` (the dbt_features config in the launchpad), or add "
    "labelled days"
)
DEV_SPLIT = "dev"


@dataclass(frozen=True)
class SplitSettings:
    """The split's settings: dbt_project.yml's vars, `FeaturesConfig` in the launchpad."""

    validation_start: str = ""  # YYYY-MM-DD; empty = automatic
    test_start: str = ""
    validation_days: int = 1
    test_days: int = 1
    holdout_share: float = 0.1  # of the users, when the automatic rule leaves no train day
    holdout_seed: int = 0

    @property
    def holdout_buckets(self) -> int:
        """The share in hash buckets of 10,000, as the dbt model rounds it."""
        return round(self.holdout_share * 10000)

    def changed(self) -> dict[str, object]:
        """The settings that differ from the defaults (the dbt vars to pass)."""
        defaults = SplitSettings()
        return {
            name: getattr(self, name)
            for name in self.__dataclass_fields__
            if getattr(self, name) != getattr(defaults, name)
        }


@dataclass(frozen=True)
class DayCount:
    """Impressions of one day in one source folder (`train`, `dev`, `test`, `landing` or
    `generic`); `labelled` impressions carry click labels (MIND's test folder has none)."""

    day: date
    source_split: str
    labelled: bool
    impressions: int


@dataclass
class SplitReport:
    """Labelled impressions per split and day, and the rule that assigned them."""

    rule: str  # "time" | "user_holdout" | "none" (no impressions at all)
    days: dict[str, list[tuple[date, int]]] = field(default_factory=dict)
    # A plan made before the data is ingested knows the held-out day's impressions, not which
    # users the hash holds out: its train and validation counts are then estimates ("~").
    estimated: bool = False

    @property
    def impressions(self) -> dict[str, int]:
        return {split: sum(n for _, n in self.days.get(split, [])) for split in SPLITS}

    @property
    def empty(self) -> list[str]:
        """The splits without a labelled impression."""
        return [split for split, n in self.impressions.items() if n == 0]

    def summary(self) -> str:
        """One line: each split's days and impressions."""
        parts = []
        for split in SPLITS:
            days = self.days.get(split, [])
            if not days:
                parts.append(f"{split}: no day")
                continue
            span = str(days[0][0]) if len(days) == 1 else f"{days[0][0]}..{days[-1][0]}"
            about = "~" if self.estimated and split != "test" else ""
            parts.append(
                f"{split}: {span} ({len(days)} day{'s' * (len(days) != 1)}, "
                f"{about}{self.impressions[split]:,} impressions)"
            )
        rule = " (user holdout: no train day was left)" if self.rule == "user_holdout" else ""
        return "; ".join(parts) + rule

    def problem(self, hint: str = SETTINGS_HINT) -> str | None:
        """None when every split holds impressions, else what is wrong and how to fix it
        (`hint`: where the settings are changed)."""
        if not self.empty:
            return None
        empty = ", ".join(self.empty)
        return f"empty split: {empty}. Found {self.summary()}. To fix: {hint}."

    def table(self) -> str:
        """Markdown: day, split, impressions."""
        rows = sorted((d, split, n) for split, days in self.days.items() for d, n in days)
        return "| day | split | labelled impressions |\n|---|---|---|\n" + "\n".join(
            f"| {d} | {split} | {n:,} |" for d, split, n in rows
        )


def describe_splits(conn) -> SplitReport:
    """The split of the warehouse behind `conn` (a DuckDB connection), per day."""
    rows = conn.execute(
        f"""
        select s.split, s.day, count(*) as n, any_value(s.split_rule) as rule
        from {IMPRESSION_SPLITS} as s
        where s.split <> 'unlabeled'
        group by s.split, s.day
        order by s.day, s.split
        """
    ).fetchall()
    report = SplitReport(rule=rows[0][3] if rows else "none")
    for split, day, n, _ in rows:
        report.days.setdefault(split, []).append((day, int(n)))
    return report


def _newest(days: list[date], n: int) -> date | None:
    """The oldest of the newest `n` days (SQL: min over `order by day desc limit n`)."""
    chosen = sorted(days, reverse=True)[: max(n, 0)]
    return min(chosen) if chosen else None


@dataclass(frozen=True)
class SplitBoundaries:
    """Where the split falls: the first test and validation days (None: no such day), whether
    the test split is the dev folder, and whether a user holdout replaces the time split."""

    test_start: date | None
    validation_start: date | None
    test_is_dev: bool
    user_holdout: bool


def split_boundaries(
    counts: Iterable[DayCount], settings: SplitSettings = SplitSettings()
) -> SplitBoundaries:
    """The boundaries `impression_splits.sql` sets for these impression counts.

    Explicit boundaries win. Else a dev folder holding only days newer than every other
    labelled day is the test split, or the newest `test_days` labelled days are; the
    `validation_days` labelled days before it are validation. When that leaves no labelled day
    before validation (and validation_start was not given, holdout_share > 0), the days before
    the test split are split by a hash of the user instead.
    """
    labelled = [c for c in counts if c.labelled and c.impressions > 0]
    days = sorted({c.day for c in labelled})
    dev = [c.day for c in labelled if c.source_split == DEV_SPLIT]
    other = [c.day for c in labelled if c.source_split != DEV_SPLIT]
    test_is_dev = not settings.test_start and bool(dev) and min(dev) > max(other, default=date.min)
    if settings.test_start:
        test_start = date.fromisoformat(settings.test_start)
    elif test_is_dev:
        test_start = min(dev)
    else:
        test_start = _newest(days, settings.test_days)
    if settings.validation_start:
        validation_start = date.fromisoformat(settings.validation_start)
    elif test_start is None:
        validation_start = None  # SQL: `day < null` selects nothing
    else:
        validation_start = _newest([d for d in days if d < test_start], settings.validation_days)
    holdout = (
        not settings.validation_start
        and settings.holdout_buckets > 0
        and validation_start is not None
        and not any(d < validation_start for d in days)
    )
    return SplitBoundaries(test_start, validation_start, test_is_dev, holdout)


def plan_splits(
    counts: Iterable[DayCount], settings: SplitSettings = SplitSettings()
) -> SplitReport:
    """The split dbt's `impression_splits` will make of these impression counts (the same rule,
    see `split_boundaries`), before anything is ingested. Held-out days count `holdout_share`
    of their impressions as validation and the rest as train, an estimate (`estimated`): the
    hash picks users, not impressions."""
    counts = list(counts)
    bounds = split_boundaries(counts, settings)
    per_day: dict[str, dict[date, float]] = {}

    def add(split: str, day: date, n: float) -> None:
        per_day.setdefault(split, {}).setdefault(day, 0)
        per_day[split][day] += n

    share = settings.holdout_buckets / 10000
    for count in counts:
        if not count.labelled or count.impressions <= 0:
            continue
        if bounds.test_start is not None and count.day >= bounds.test_start:
            add("test", count.day, count.impressions)
        elif bounds.user_holdout:
            add("validation", count.day, count.impressions * share)
            add("train", count.day, count.impressions * (1 - share))
        elif bounds.validation_start is not None and count.day >= bounds.validation_start:
            add("validation", count.day, count.impressions)
        else:
            add("train", count.day, count.impressions)
    rule = "user_holdout" if bounds.user_holdout else ("time" if per_day else "none")
    report = SplitReport(rule=rule, estimated=bounds.user_holdout)
    for split in SPLITS:
        days = sorted(per_day.get(split, {}).items())
        if days:
            report.days[split] = [(d, round(n)) for d, n in days]
    return report


def describe_rule(counts: Iterable[DayCount], settings: SplitSettings = SplitSettings()) -> str:
    """The rule that splits these impression counts, in words, naming its settings."""
    bounds = split_boundaries(list(counts), settings)
    if settings.test_start:
        test = f"test from test_start {settings.test_start}"
    elif bounds.test_is_dev:
        test = "test: the dev folder (its days are the newest)"
    else:
        test = f"test: the newest {settings.test_days} labelled day(s) (test_days)"
    if bounds.user_holdout:
        return (
            f"{test}; user holdout, as no train day would be left: a hash of the user "
            f"(holdout_seed {settings.holdout_seed}) puts holdout_share "
            f"{settings.holdout_share:g} of the users of the days before test in validation, "
            "the rest in train"
        )
    if settings.validation_start:
        validation = f"validation from validation_start {settings.validation_start}"
    else:
        validation = (
            f"validation: the {settings.validation_days} labelled day(s) before test "
            "(validation_days)"
        )
    return f"time split: {test}; {validation}; train: every day before"
