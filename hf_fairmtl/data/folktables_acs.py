"""ACS PUMS (American Community Survey person records) through folktables, for multi-task fairness.

The L2T-FMT setting (Roy & Ntoutsi 2022) predicts five binary outcomes for the same person. Their
targets are exactly the targets of five folktables problems, so the definitions are taken from
folktables itself (`problem.target` and `problem.target_transform`):

| task               | folktables problem      | label                 |
|--------------------|-------------------------|-----------------------|
| `employment`       | `ACSEmployment`         | `ESR == 1`            |
| `income`           | `ACSIncome`             | `PINCP > 50000`       |
| `health_insurance` | `ACSHealthInsurance`    | `HINS2 == 1`          |
| `travel_time`      | `ACSTravelTime`         | `JWMNP > 20`          |
| `poverty`          | `ACSIncomePovertyRatio` | `POVPIP < 250`        |

For these five, every person is one row with all five labels, and a label is missing (-100) where the
census leaves its variable blank ("not in universe": no ESR under 16, no JWMNP for people who do not
commute, ...), instead of folktables' row filters. Passing a folktables problem name instead
(`"ACSIncome"`, `"ACSTravelTime"`, ...) gives that problem exactly as folktables defines it: its row
filter (rows outside it get -100) and its labels (folktables maps a blank target to False).

Protected attributes: `sex` (SEX: 1 male, 2 female) and `race` (RAC1P, nine census codes, or
`race_grouping="binary"`: white / non_white).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import folktables
import numpy as np
import pandas as pd

from ..utils import suggest_names
from .builder import SourceSplits, TaskSource
from .features import encoded_dataset, fit_feature_encoding, split_frame, subsample


@dataclass(frozen=True)
class ACSTask:
    """A binary ACS task: a folktables problem's target, with or without its row filter."""

    problem: folktables.BasicProblem
    use_problem_filter: bool

    @property
    def target(self) -> str:
        return self.problem.target


L2T_FMT_TASKS: dict[str, ACSTask] = {
    "employment": ACSTask(folktables.ACSEmployment, False),
    "income": ACSTask(folktables.ACSIncome, False),
    "health_insurance": ACSTask(folktables.ACSHealthInsurance, False),
    "travel_time": ACSTask(folktables.ACSTravelTime, False),
    "poverty": ACSTask(folktables.ACSIncomePovertyRatio, False),
}

FOLKTABLES_TASKS: dict[str, ACSTask] = {
    name: ACSTask(getattr(folktables, name), True)
    for name in (
        "ACSIncome",
        "ACSEmployment",
        "ACSHealthInsurance",
        "ACSPublicCoverage",
        "ACSTravelTime",
        "ACSMobility",
        "ACSEmploymentFiltered",
        "ACSIncomePovertyRatio",
    )
}

# Shared inputs for the five L2T-FMT tasks: folktables' ACSEmployment features, which contain none of
# the five targets (ESR, PINCP, HINS2, JWMNP, POVPIP), so no task's label leaks into the shared encoder.
L2T_FMT_FEATURES: list[str] = list(folktables.ACSEmployment.features)

# ACS variables that are amounts or ordered levels; every other feature is a code list and is one-hot encoded.
NUMERIC_ACS_COLUMNS = frozenset({"AGEP", "SCHL", "WKHP", "PINCP", "JWMNP", "POVPIP", "PWGTP", "JWRIP", "MARHYP"})

PROTECTED_ACS_COLUMNS = frozenset(
    {"SEX", "RAC1P", "RACAIAN", "RACASN", "RACBLK", "RACNH", "RACPI", "RACSOR", "RACWHT", "RAC2P", "RAC3P"}
)

SEX_NAMES = {1: "male", 2: "female"}
RACE_NAMES = {
    1: "white",
    2: "black",
    3: "american_indian",
    4: "alaska_native",
    5: "american_indian_alaska_native_other",
    6: "asian",
    7: "pacific_islander",
    8: "some_other_race",
    9: "two_or_more_races",
}
RACE_GROUPINGS = ("detailed", "binary")


def acs_group_vocab(race_grouping: str = "detailed") -> dict[str, list[str]]:
    """The fixed group vocabularies (all census codes, present in the data or not), so ids never shift."""
    if race_grouping not in RACE_GROUPINGS:
        raise ValueError(f"race_grouping={race_grouping!r} is not one of {RACE_GROUPINGS}")
    race = sorted(RACE_NAMES.values()) if race_grouping == "detailed" else ["non_white", "white"]
    return {"sex": sorted(SEX_NAMES.values()), "race": race}


def resolve_acs_tasks(tasks: Sequence[str] | Mapping[str, ACSTask] | None) -> dict[str, ACSTask]:
    """Task name -> spec: L2T-FMT names, folktables problem names, or your own `ACSTask`s."""
    if tasks is None:
        return dict(L2T_FMT_TASKS)
    if isinstance(tasks, Mapping):
        return dict(tasks)
    known = {**L2T_FMT_TASKS, **FOLKTABLES_TASKS}
    resolved = {}
    for name in tasks:
        if name not in known:
            raise ValueError(f"Unknown ACS task {name!r}{suggest_names(name, known)} Known: {sorted(known)}")
        resolved[name] = known[name]
    return resolved


def acs_labels(frame: pd.DataFrame, tasks: Mapping[str, ACSTask]) -> pd.DataFrame:
    """One nullable 0/1 column per task for raw ACS rows (missing = no label for that person)."""
    frame = frame.reset_index(drop=True)
    out = {}
    for name, task in tasks.items():
        if task.target not in frame.columns:
            raise ValueError(f"ACS task {name!r} needs column {task.target!r}, which the data lacks")
        target = frame[task.target]
        labels = pd.Series(task.problem.target_transform(target).astype("int64"), dtype="Int64")
        if task.use_problem_filter:
            # The problem's own preprocess is its row filter; rows it drops get no label for this task.
            kept = task.problem._preprocess(frame).index
            labels[~frame.index.isin(kept)] = pd.NA
        else:
            labels[target.isna()] = pd.NA
        out[name] = labels
    return pd.DataFrame(out)


def load_acs_frame(
    root_dir: str = "data",
    states: Sequence[str] = ("CA",),
    year: int = 2018,
    horizon: str = "1-Year",
    tasks: Sequence[str] | Mapping[str, ACSTask] | None = None,
    download: bool = False,
    density: float = 1.0,
    random_seed: int = 0,
    max_rows: int | None = None,
    race_grouping: str = "detailed",
) -> pd.DataFrame:
    """Read ACS person records with folktables and add task labels and named groups.

    Args:
        root_dir: Folder folktables reads from and downloads to; files are
            `{root_dir}/{year}/{horizon}/psam_p{state FIPS}.csv` (year >= 2017).
        states: Two-letter state codes.
        year: Survey year (folktables supports 2014 and later).
        horizon: `"1-Year"` or `"5-Year"`.
        tasks: Task names (default: the five L2T-FMT tasks) or a dict name -> `ACSTask`.
        download: Let folktables download missing state files from census.gov.
        density: Fraction of rows folktables keeps while reading (its own subsampling).
        random_seed: folktables' sampling seed, also used for `max_rows`.
        max_rows: Keep at most this many random rows.
        race_grouping: `"detailed"` (nine RAC1P codes) or `"binary"` (white / non_white).

    Returns:
        The raw columns plus one nullable Int64 column per task and string columns `sex` and `race`.
    """
    tasks = resolve_acs_tasks(tasks)
    acs_group_vocab(race_grouping)  # validates the grouping before the (possibly long) read
    source = folktables.ACSDataSource(survey_year=str(year), horizon=horizon, survey="person", root_dir=root_dir)
    raw = source.get_data(states=list(states), density=density, random_seed=random_seed, download=download)
    raw = subsample(raw, max_rows, random_seed)
    clash = [name for name in list(tasks) + ["sex", "race"] if name in raw.columns]
    if clash:
        raise ValueError(f"Task/attribute names {clash} clash with ACS columns; rename the tasks")
    for column in ("SEX", "RAC1P"):
        if column not in raw.columns:
            raise ValueError(f"ACS data lacks the protected attribute column {column!r}")
    labels = acs_labels(raw, tasks)
    sex = raw["SEX"].map(SEX_NAMES)
    race = raw["RAC1P"].map(RACE_NAMES)
    if race_grouping == "binary":
        race = race.where(race.isna() | (race == "white"), "non_white")
    return pd.concat([raw, labels, sex.rename("sex"), race.rename("race")], axis=1)


def default_acs_features(tasks: Mapping[str, ACSTask]) -> list[str]:
    """L2T-FMT features for unfiltered (L2T-style) tasks; else the union of the folktables problems' features.

    Targets of any chosen task are removed, so one task's label never feeds another task's input.
    """
    if not any(task.use_problem_filter for task in tasks.values()):
        features = list(L2T_FMT_FEATURES)
    else:
        features = list(dict.fromkeys(f for task in tasks.values() for f in task.problem.features))
    targets = {task.target for task in tasks.values()}
    return [f for f in features if f not in targets]


def load_acs_sources(
    root_dir: str = "data",
    states: Sequence[str] = ("CA",),
    year: int = 2018,
    horizon: str = "1-Year",
    tasks: Sequence[str] | Mapping[str, ACSTask] | None = None,
    features: Sequence[str] | None = None,
    protected_features: bool = True,
    max_categories: int | None = 64,
    test_size: float = 0.2,
    seed: int = 0,
    download: bool = False,
    density: float = 1.0,
    max_rows: int | None = None,
    race_grouping: str = "detailed",
    name: str = "acs",
) -> SourceSplits:
    """ACS person records as train/test `TaskSource`s with a feature encoding fitted on train.

    Args:
        root_dir, states, year, horizon, download, density, max_rows, race_grouping: See `load_acs_frame`.
        tasks: Task names (default: the five L2T-FMT tasks) or a dict name -> `ACSTask`.
        features: Raw input columns (default: `default_acs_features(tasks)`). Columns in
            `NUMERIC_ACS_COLUMNS` are standardised, the rest one-hot encoded.
        protected_features: Keep SEX/RAC1P (and the RAC* flags) among the inputs, as folktables does.
        max_categories: One-hot at most this many most frequent codes per column (OCCP has ~500).
        test_size: Fraction of rows held out for the test source.
        seed: Split seed.
        name: Source name prefix (`"{name}_train"`, `"{name}_test"`).

    Returns:
        `SourceSplits` with `train`/`test` sources (a `features` column, one label column per task,
        `sex`, `race`), the fitted `feature_encoding` and the fixed group vocabularies;
        `FairMTLConfig(**splits.config_kwargs())` matches them.

    Raises:
        ValueError: A feature is the target of a chosen task, or a column is missing.
    """
    task_specs = resolve_acs_tasks(tasks)
    frame = load_acs_frame(
        root_dir=root_dir,
        states=states,
        year=year,
        horizon=horizon,
        tasks=task_specs,
        download=download,
        density=density,
        random_seed=seed,
        max_rows=max_rows,
        race_grouping=race_grouping,
    )
    features = list(features) if features is not None else default_acs_features(task_specs)
    leaks = {f: t for t, spec in task_specs.items() for f in features if f == spec.target}
    if leaks:
        raise ValueError(f"Feature(s) {sorted(leaks)} are targets of tasks {sorted(set(leaks.values()))}; drop them")
    if not protected_features:
        features = [f for f in features if f not in PROTECTED_ACS_COLUMNS]
    missing = [f for f in features if f not in frame.columns]
    if missing:
        raise ValueError(f"ACS data lacks feature column(s) {missing}")
    train, test = split_frame(frame, test_size, seed)
    encoding = fit_feature_encoding(
        train,
        numeric=[f for f in features if f in NUMERIC_ACS_COLUMNS],
        categorical=[f for f in features if f not in NUMERIC_ACS_COLUMNS],
        max_categories=max_categories,
    )
    keep = list(task_specs) + ["sex", "race"]
    sources = [
        TaskSource(
            encoded_dataset(part, encoding, keep),
            tasks={task: task for task in task_specs},
            attributes={"sex": "sex", "race": "race"},
            name=f"{name}_{split}",
            text_column=None,
            feature_columns=["features"],
        )
        for split, part in (("train", train), ("test", test))
    ]
    return SourceSplits(
        train=sources[0],
        test=sources[1],
        feature_encoding=encoding,
        tasks=list(task_specs),
        protected_attributes=["sex", "race"],
        group_vocab=acs_group_vocab(race_grouping),
    )


def acs_task_balance(frame: pd.DataFrame, tasks: Sequence[str]) -> dict[str, dict[str, Any]]:
    """Labelled rows and positive rate per task, for a quick look at what was loaded."""
    out = {}
    for task in tasks:
        labels = frame[task].dropna().astype(int)
        out[task] = {"labelled": int(len(labels)), "positive_rate": float(np.mean(labels)) if len(labels) else None}
    return out
