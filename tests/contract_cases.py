"""One table drives the contract tests of every registered loss, strategy and task weighting (PEFT's TEST_CASES).

A case is `(case_id, training-argument overrides)`. Every registered strategy runs with its defaults, every
registered weighting under `weighted` (so a fairness term is present), every registered fairness loss under
`weighted`. A newly registered plug-in is picked up here automatically, so it cannot escape the contract.
"""

from __future__ import annotations

from typing import Any

from hf_fairmtl.losses import FAIRNESS_LOSSES
from hf_fairmtl.strategies import STRATEGIES
from hf_fairmtl.weighting import WEIGHTINGS


def contract_cases() -> list[tuple[str, dict[str, Any]]]:
    """Every registered strategy, weighting and fairness loss, each with the others at their defaults."""
    cases = [(f"strategy={name}", {"strategy": name}) for name in sorted(STRATEGIES)]
    cases += [(f"weighting={name}", {"strategy": "weighted", "weighting": name}) for name in sorted(WEIGHTINGS)]
    cases += [(f"loss={name}", {"strategy": "weighted", "fairness_loss": name}) for name in sorted(FAIRNESS_LOSSES)]
    return cases
