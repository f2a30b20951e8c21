"""Benchmarks of hf_fairmtl: training cost (`benchmarks.cost`) and fairness/accuracy quality
(`benchmarks.quality_tabular`, `benchmarks.quality_text`), driven together by `python -m benchmarks.run`.

See `benchmarks/README.md` for the numbers and how they were made. Importing the package makes every run
offline (nothing downloads: the data and the MiniLM encoder ship inside installed packages).
"""

import os

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("HF_DATASETS_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
