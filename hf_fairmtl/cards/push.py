"""Pushing FairMTL models (full or PEFT adapters) with their fairness model card to the Hub, in one commit."""

from __future__ import annotations

import copy
import tempfile
from collections.abc import Mapping
from typing import Any

from huggingface_hub import CommitInfo, HfApi, ModelCard
from torch import nn

from .render import is_adapter_model, render_model_card, save_model_card

__all__ = ["push_model_to_hub"]


def push_model_to_hub(
    model: nn.Module,
    repo_id: str,
    card: ModelCard | None = None,
    *,
    eval_metrics: Mapping[str, Any] | None = None,
    tokenizer: Any = None,
    commit_message: str = "Upload FairMTL model",
    commit_description: str | None = None,
    private: bool | None = None,
    token: str | bool | None = None,
    revision: str | None = None,
    create_pr: bool = False,
    merge_adapter: bool = False,
    api: HfApi | None = None,
    **card_kwargs: Any,
) -> CommitInfo:
    """Create the repo if needed and push the model, its card and (optionally) its tokenizer in one commit.

    A `FairMTLModel` is saved with `save_pretrained`: `config.json`, the safetensors weights and the
    `configuration_fairmtl.py`/`modeling_fairmtl.py` files that let `AutoModel.from_pretrained(repo,
    trust_remote_code=True)` load it without hf_fairmtl installed. A `PeftModel` is saved as an adapter (adapter
    weights, task heads, `fairmtl_config.json`; load it with `hf_fairmtl.peft_utils.load_peft_model(repo)`),
    or merged into a full model first with `merge_adapter=True`.

    Args:
        model: A `FairMTLModel` or a `PeftModel` around one.
        repo_id: Target model repo (`"user/name"`).
        card: The card to push; rendered with [`render_model_card`] from `eval_metrics` and `card_kwargs` if not
            given.
        eval_metrics: Metrics of the last evaluation, for a card rendered here.
        tokenizer: Saved next to the model when given.
        commit_message: Commit title.
        commit_description: Commit description.
        private: Visibility of a newly created repo.
        token: Hub token (defaults to the logged-in one / `HF_TOKEN`).
        revision: Branch to commit to.
        create_pr: Open a pull request instead of committing to the branch.
        merge_adapter: Push a PEFT model as a merged full model (the adapter merged into a copy of the model).
        api: The `HfApi` to use (e.g. one with another endpoint); a new one otherwise.
        **card_kwargs: Passed to [`render_model_card`] when `card` is not given.

    Returns:
        The `huggingface_hub.CommitInfo` of the commit.
    """
    is_adapter = is_adapter_model(model)
    if merge_adapter and is_adapter:
        # merge_and_unload rewrites the modules in place; the caller's PeftModel stays usable.
        model = copy.deepcopy(model).merge_and_unload()
        is_adapter = False
    api = api or HfApi(token=token)
    repo_url = api.create_repo(repo_id, private=private, exist_ok=True, token=token)
    if card is None:
        card = render_model_card(model, eval_metrics, repo_id=repo_url.repo_id, **card_kwargs)
    with tempfile.TemporaryDirectory() as folder:
        if is_adapter:
            from ..peft_utils import save_peft_model

            save_peft_model(model, folder)
        else:
            model.save_pretrained(folder)
        if tokenizer is not None:
            tokenizer.save_pretrained(folder)
        # After saving: PEFT writes its own generic README.md, which this card replaces.
        save_model_card(folder, card)
        return api.upload_folder(
            repo_id=repo_url.repo_id,
            folder_path=folder,
            commit_message=commit_message,
            commit_description=commit_description,
            token=token,
            revision=revision,
            create_pr=create_pr,
        )
