"""The shipped `accelerate` configs load with accelerate's own parser and name the intended backend."""

from __future__ import annotations

from pathlib import Path

import pytest
from accelerate.commands.config.config_args import load_config_from_file
from accelerate.utils import DistributedType

CONFIGS = Path(__file__).parent.parent / "examples" / "accelerate"


@pytest.mark.parametrize(
    ("name", "backend"),
    [
        ("ddp.yaml", DistributedType.MULTI_GPU),
        ("fsdp.yaml", DistributedType.FSDP),
        ("deepspeed_zero2.yaml", DistributedType.DEEPSPEED),
    ],
)
def test_config_loads(name: str, backend: DistributedType) -> None:
    config = load_config_from_file(str(CONFIGS / name))
    assert config.distributed_type == backend
    assert config.num_processes >= 2
    if backend == DistributedType.DEEPSPEED:
        assert config.deepspeed_config["zero_stage"] == 2
    if backend == DistributedType.FSDP:
        assert config.fsdp_config["fsdp_transformer_layer_cls_to_wrap"] == "BertLayer"
