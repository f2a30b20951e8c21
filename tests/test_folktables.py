"""ACS PUMS through folktables, on small files the test writes in folktables' own layout.

folktables' `ACSDataSource(survey_year, "1-Year", "person", root_dir).get_data(states)` reads
`{root_dir}/{year}/1-Year/psam_p{state FIPS}.csv` for years >= 2017 (two-digit FIPS code, lower-case
`psam_p`), with a header row and comma-separated values; blank cells are the census' "not in universe".
"""

from __future__ import annotations

import json

import folktables
import numpy as np
import pandas as pd
import pytest
import torch

from hf_fairmtl import FairMTLConfig, FairMTLModel
from hf_fairmtl.data import DataCollatorForFairMTL, build_multitask_dataset, encode_features, fit_feature_encoding
from hf_fairmtl.data.folktables_acs import L2T_FMT_TASKS, load_acs_frame, load_acs_sources

STATES = {"CA": "06", "AL": "01"}
ROWS_PER_STATE = 150
L2T_TARGETS = {
    "employment": lambda d: d["ESR"] == 1,
    "income": lambda d: d["PINCP"] > 50000,
    "health_insurance": lambda d: d["HINS2"] == 1,
    "travel_time": lambda d: d["JWMNP"] > 20,
    "poverty": lambda d: d["POVPIP"] < 250,
}


def _person_records(n: int, state_code: str, rng: np.random.Generator) -> pd.DataFrame:
    """Synthetic person records with the PUMS columns the folktables problems use, blanks where PUMS has them."""
    age = rng.integers(0, 95, n)
    worker_age = age >= 16
    esr = np.where(worker_age, rng.integers(1, 7, n), np.nan)
    employed = np.isin(esr, [1, 2])
    commutes = employed & (rng.random(n) < 0.8)

    def blank_unless(mask, values):
        return np.where(mask, values, np.nan)

    race = rng.integers(1, 10, n)
    frame = {
        "RT": ["P"] * n,
        "SERIALNO": [f"2018HU{state_code}{i:07d}" for i in range(n)],
        "SPORDER": np.ones(n, int),
        "PUMA": rng.integers(101, 110, n),
        "ST": np.full(n, int(state_code)),
        "PWGTP": rng.integers(1, 200, n),
        "AGEP": age,
        "CIT": rng.integers(1, 6, n),
        "COW": blank_unless(worker_age, rng.integers(1, 10, n)),
        "DEAR": rng.integers(1, 3, n),
        "DEYE": rng.integers(1, 3, n),
        "DREM": blank_unless(age >= 5, rng.integers(1, 3, n)),
        "DIS": rng.integers(1, 3, n),
        "ESP": blank_unless(age < 18, rng.integers(1, 9, n)),
        "ESR": esr,
        "FER": blank_unless(worker_age, rng.integers(1, 3, n)),
        "GCL": blank_unless(age >= 30, rng.integers(1, 3, n)),
        "HINS2": rng.integers(1, 3, n),
        "JWMNP": blank_unless(commutes, rng.integers(1, 120, n)),
        "JWTR": blank_unless(commutes, rng.integers(1, 13, n)),
        "MAR": rng.integers(1, 6, n),
        "MIG": blank_unless(age >= 1, rng.integers(1, 4, n)),
        "MIL": blank_unless(age >= 17, rng.integers(1, 5, n)),
        "NATIVITY": rng.integers(1, 3, n),
        "ANC": rng.integers(1, 5, n),
        "OCCP": blank_unless(employed, rng.choice([10, 230, 3255, 4700, 9130], n)),
        "PINCP": blank_unless(age >= 15, rng.integers(-5000, 150000, n)),
        "POBP": rng.choice([6, 1, 36, 210, 303], n),
        "POVPIP": blank_unless(rng.random(n) > 0.05, rng.integers(0, 502, n)),
        "POWPUMA": blank_unless(commutes, rng.integers(100, 110, n)),
        "PUBCOV": rng.integers(1, 3, n),
        "RAC1P": race,
        "RACAIAN": np.isin(race, [3, 4, 5]).astype(int),
        "RACASN": (race == 6).astype(int),
        "RACBLK": (race == 2).astype(int),
        "RACNH": (race == 7).astype(int),
        "RACPI": (race == 7).astype(int),
        "RACSOR": (race == 8).astype(int),
        "RACWHT": (race == 1).astype(int),
        "RELP": rng.integers(0, 18, n),
        "SCHL": blank_unless(age >= 3, rng.integers(1, 25, n)),
        "SEX": rng.integers(1, 3, n),
        "WKHP": blank_unless(employed, rng.integers(1, 99, n)),
    }
    return pd.DataFrame(frame)


@pytest.fixture(scope="module")
def acs_root(tmp_path_factory):
    root = tmp_path_factory.mktemp("acs")
    folder = root / "2018" / "1-Year"
    folder.mkdir(parents=True)
    rng = np.random.default_rng(0)
    for code in STATES.values():
        # float_format keeps integer codes free of ".0" where a column has blanks, like the census files.
        _person_records(ROWS_PER_STATE, code, rng).to_csv(
            folder / f"psam_p{code}.csv", index=False, float_format="%.0f"
        )
    return root


@pytest.fixture(scope="module")
def raw_rows(acs_root) -> pd.DataFrame:
    folder = acs_root / "2018" / "1-Year"
    return pd.concat([pd.read_csv(folder / f"psam_p{c}.csv") for c in STATES.values()], ignore_index=True)


def test_fixture_is_read_by_folktables(acs_root):
    data = folktables.ACSDataSource("2018", "1-Year", "person", root_dir=str(acs_root)).get_data(states=list(STATES))
    assert len(data) == 2 * ROWS_PER_STATE
    with pytest.raises(FileNotFoundError):
        load_acs_frame(str(acs_root), states=["TX"])


def test_all_five_l2t_tasks_round_trip(acs_root, raw_rows):
    frame = load_acs_frame(str(acs_root), states=list(STATES))
    assert len(frame) == 2 * ROWS_PER_STATE
    assert list(L2T_FMT_TASKS) == list(L2T_TARGETS)
    for task, rule in L2T_TARGETS.items():
        target = L2T_FMT_TASKS[task].target
        expected = rule(raw_rows).astype(int).where(raw_rows[target].notna())
        got = frame[task].astype("Float64")
        assert got.isna().equals(expected.isna()), task
        assert (got.dropna().to_numpy() == expected.dropna().to_numpy()).all(), task
        assert 0 < got.notna().sum() and 0 < got.sum() < got.notna().sum(), f"{task} should have both classes"
    # "not in universe" -> no label: no employment label under 16, no travel time without a commute
    assert frame.loc[frame["AGEP"] < 16, "employment"].isna().all()
    assert frame.loc[raw_rows["JWMNP"].isna(), "travel_time"].isna().all()
    assert set(frame["sex"]) == {"female", "male"}
    assert frame["race"].notna().all() and frame.loc[raw_rows["RAC1P"] == 2, "race"].eq("black").all()


@pytest.mark.parametrize(
    "name",
    ["ACSIncome", "ACSEmployment", "ACSHealthInsurance", "ACSTravelTime", "ACSIncomePovertyRatio", "ACSPublicCoverage"],
)
def test_standard_folktables_tasks_use_folktables_definitions(acs_root, raw_rows, name):
    frame = load_acs_frame(str(acs_root), states=list(STATES), tasks=[name])
    _, target, _ = getattr(folktables, name).df_to_pandas(raw_rows)
    labelled = frame[name].dropna().astype(int).to_numpy()
    assert (labelled == target.iloc[:, 0].astype(int).to_numpy()).all()


def test_sources_features_and_config(acs_root, raw_rows, tmp_path):
    splits = load_acs_sources(str(acs_root), states=list(STATES), test_size=0.2, seed=0)
    assert len(splits.train.dataset) == 240 and len(splits.test.dataset) == 60
    encoding = splits.feature_encoding
    assert json.loads(json.dumps(encoding)) == encoding
    assert encoding["num_features"] == len(splits.train.dataset[0]["features"])
    assert {"SEX=1", "SEX=2", "AGEP", "SCHL"} <= set(encoding["feature_names"])
    assert not {"ESR", "PINCP", "HINS2", "JWMNP", "POVPIP"} & {n.split("=")[0] for n in encoding["feature_names"]}

    config = FairMTLConfig(**splits.config_kwargs(), tabular_hidden_sizes=[8])
    config.save_pretrained(tmp_path)
    reloaded = FairMTLConfig.from_pretrained(tmp_path)
    assert reloaded.feature_encoding == encoding and reloaded.num_features == encoding["num_features"]

    # Raw rows re-encoded with the stored encoding give the training features back.
    frame = load_acs_frame(str(acs_root), states=list(STATES))
    from hf_fairmtl.data.features import split_frame

    _, test_rows = split_frame(frame, 0.2, 0)
    assert np.allclose(encode_features(test_rows, reloaded.feature_encoding), np.array(splits.test.dataset["features"]))

    ds = build_multitask_dataset([splits.train], config)
    batch = DataCollatorForFairMTL()([ds[i] for i in range(32)])
    assert batch["labels"].shape == (32, 5) and batch["group_labels"].shape == (32, 2)
    assert batch["labels"].eq(-100).any() and batch["group_labels"].ge(0).all()
    assert torch.isfinite(FairMTLModel(config)(**batch).loss)


def test_options_and_errors(acs_root):
    binary = load_acs_sources(str(acs_root), states=["CA"], race_grouping="binary", protected_features=False)
    assert binary.group_vocab["race"] == ["non_white", "white"]
    assert not any(n.startswith(("SEX", "RAC1P")) for n in binary.feature_encoding["feature_names"])
    assert set(binary.train.dataset["race"]) == {"non_white", "white"}
    with pytest.raises(ValueError, match=r"'ACSIncom'.*did you mean 'ACSIncome'"):
        load_acs_frame(str(acs_root), states=["CA"], tasks=["ACSIncom"])
    with pytest.raises(ValueError, match=r"\['PINCP'\] are targets of tasks \['income'\]"):
        load_acs_sources(str(acs_root), states=["CA"], features=["AGEP", "PINCP"])
    with pytest.raises(ValueError, match="race_grouping"):
        load_acs_frame(str(acs_root), states=["CA"], race_grouping="coarse")


def test_encoding_unseen_and_missing_values():
    train = pd.DataFrame({"age": [20.0, 40.0, None], "job": [1, 2, 2], "city": ["a", "b", "c"]})
    encoding = fit_feature_encoding(train, numeric=["age"], categorical=["job", "city"], max_categories=2)
    assert encoding["feature_names"] == ["age", "job=1", "job=2", "city=a", "city=b", "city=__other__"]
    raw = pd.DataFrame({"age": [None, 30.0], "job": [2.0, 7], "city": ["zzz", "a"]})
    out = encode_features(raw, encoding)
    assert out[0].tolist() == [0.0, 0.0, 1.0, 0.0, 0.0, 1.0]  # missing age -> mean; 2.0 == 2; unseen city -> other
    assert out[1, 1:3].tolist() == [0.0, 0.0]  # unseen job code -> all zeros
    with pytest.raises(ValueError, match=r"lack feature column\(s\) \['city'\]"):
        encode_features(raw.drop(columns="city"), encoding)
