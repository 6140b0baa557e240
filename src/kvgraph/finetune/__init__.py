"""Fine-tuning on the user's own corpus (RA-DIT): training pairs, leak-free splits, the embedder, the LLM.

- :mod:`~kvgraph.finetune.pairs`: :class:`TrainingPair` and its JSONL file;
- :mod:`~kvgraph.finetune.offline`: pairs without an LLM (inverse cloze, headings, labelled sets);
- :mod:`~kvgraph.finetune.split`: train/test splits by document or shuffled, with no question on both sides;
- :mod:`~kvgraph.finetune.embedder`: fine-tune the embedding model (in-batch negatives, early stopping);
- :mod:`~kvgraph.finetune.negatives`: hard negatives mined from a knowledge base's index;
- :mod:`~kvgraph.finetune.qa`: answers written through the RAG pipeline, or loaded from a file;
- :mod:`~kvgraph.finetune.augment`: each pair with its retrieved context, in the ``ask`` prompt;
- :mod:`~kvgraph.finetune.export`: OpenAI chat JSONL, TRL SFT and DPO files, validated;
- :mod:`~kvgraph.finetune.openai_ft`: the OpenAI Files and Fine-tuning API;
- :mod:`~kvgraph.finetune.local_lm`: LoRA SFT and DPO with TRL and PEFT.

Heavy libraries (torch, transformers, trl) load only when a training function runs.
"""

from __future__ import annotations

from importlib import import_module

from kvgraph.finetune.pairs import TrainingPair, load_pairs, save_pairs
from kvgraph.finetune.split import Split, split_pairs

_LAZY = {
    "EmbedderTrainConfig": "kvgraph.finetune.embedder",
    "finetune_embedder": "kvgraph.finetune.embedder",
}


def __getattr__(name: str) -> object:
    if name in _LAZY:
        return getattr(import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'kvgraph.finetune' has no attribute {name!r}")


__all__ = ["Split", "TrainingPair", "load_pairs", "save_pairs", "split_pairs", *_LAZY]
