"""`evaluate` module for group fairness metrics, loadable offline from its folder.

```python
import evaluate
from hf_fairmtl.metrics import FAIRNESS_METRIC_PATH

metric = evaluate.load(FAIRNESS_METRIC_PATH)  # a local path: nothing is downloaded
metric.compute(predictions=[1, 0, 1], references=[1, 1, 0], groups=[0, 1, 1], group_names=["f", "m"])
```

The module is a thin wrapper: the figures come from `hf_fairmtl.metrics.fairness_metrics`, which must be
importable (the `hf_fairmtl` package installed).
"""

import datasets
import evaluate

from hf_fairmtl.losses.eps_deo import DEFAULT_CONCENTRATION
from hf_fairmtl.metrics import fairness_metrics

_DESCRIPTION = """
Group fairness of a classifier's hard predictions with respect to one protected attribute: accuracy,
per-group true-positive, false-positive and selection rates, their max-min gaps across groups, the
equalized-odds violation (TPR gap + FPR gap), the demographic-parity gap, epsilon-differential equalized
odds, and fairlib's RMS TPR gap. Rows whose group is -1 (unknown) count in accuracy only; rows whose
reference is -100 are ignored. Multi-class tasks are evaluated one-vs-rest per class.
"""

_KWARGS_DESCRIPTION = """
Args:
    predictions (`list[int]`): Predicted classes.
    references (`list[int]`): True classes, -100 = missing.
    groups (`list[int]`): Group id of each row for one protected attribute, -1 = unknown.
    num_classes (`int`, *optional*): Number of classes (inferred when omitted).
    group_names (`list[str]`, *optional*): Names of the group ids, used in the per-group keys.
    alpha (`float`, *optional*, defaults to 0.1): Smoothing concentration of `eps_deo`.

Returns:
    `dict[str, float]` with `accuracy`, `tpr_{group}`, `fpr_{group}`, `selection_rate_{group}`,
    `count_{group}`, `tpr_gap`, `fpr_gap`, `eo_violation`, `dp_gap`, `eps_deo`, `rms_tpr_gap`.

Example:
    >>> metric = evaluate.load("path/to/fairness_metric")
    >>> metric.compute(predictions=[1, 1, 0, 1], references=[1, 0, 0, 1], groups=[0, 0, 1, 1])["tpr_gap"]
    0.0
"""

_CITATION = """
@inproceedings{roy2022learning,
  title={Learning to Teach Fairness-aware Deep Multi-task Learning},
  author={Roy, Arjun and Ntoutsi, Eirini},
  booktitle={ECML PKDD},
  year={2022}
}
@inproceedings{foulds2020intersectional,
  title={An Intersectional Definition of Fairness},
  author={Foulds, James R. and Islam, Rashidul and Keya, Kamrun Naher and Pan, Shimei},
  booktitle={ICDE},
  year={2020}
}
"""


@evaluate.utils.file_utils.add_start_docstrings(_DESCRIPTION, _KWARGS_DESCRIPTION)
class FairnessMetric(evaluate.Metric):
    """Group fairness metrics (see `hf_fairmtl.metrics.fairness_metrics`)."""

    def _info(self) -> evaluate.MetricInfo:
        return evaluate.MetricInfo(
            description=_DESCRIPTION,
            citation=_CITATION,
            inputs_description=_KWARGS_DESCRIPTION,
            features=datasets.Features(
                {
                    "predictions": datasets.Value("int64"),
                    "references": datasets.Value("int64"),
                    "groups": datasets.Value("int64"),
                }
            ),
        )

    def _compute(
        self,
        predictions: list[int],
        references: list[int],
        groups: list[int],
        num_classes: int | None = None,
        group_names: list[str] | None = None,
        alpha: float = DEFAULT_CONCENTRATION,
    ) -> dict[str, float]:
        return fairness_metrics(
            references, predictions, groups, num_classes=num_classes, group_names=group_names, alpha=alpha
        )
