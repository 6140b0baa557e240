"""LoRA fine-tuning of a local causal language model with TRL and PEFT (SFT, or DPO), on CPU or GPU.

Input: the files ``kvgraph finetune export`` writes (``--format sft``: ``{"messages": [...]}``
per line; ``--format dpo``: ``{"prompt", "chosen", "rejected"}``). The model is any Hugging
Face causal-LM directory whose tokenizer has a chat template. Only the LoRA adapter is trained
and saved (``adapter_model.safetensors`` + ``adapter_config.json`` in ``out_dir``, with the
tokenizer); ``merge=True`` also writes the merged full model, which ``vllm serve`` or any
OpenAI-compatible server can load.

The libraries are an optional extra (``pip install 'kvgraph[finetune]'``: trl, peft, datasets,
accelerate); nothing else in kvgraph imports them.
"""

from __future__ import annotations

import json
import os
import shutil
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from kvgraph.errors import InvalidInputError, MissingDependencyError

METHODS = ("sft", "dpo")


@dataclass
class LocalTrainConfig:
    method: str = "sft"
    epochs: float = 1.0
    max_steps: int = -1  # > 0 overrides epochs
    learning_rate: float = 2e-4
    batch_size: int = 2
    gradient_accumulation: int = 1
    lora_r: int = 8
    lora_alpha: int = 16
    lora_dropout: float = 0.05
    target_modules: str | list[str] = "all-linear"
    max_length: int = 1024
    beta: float = 0.1  # DPO
    seed: int = 0
    merge: bool = False

    def check(self) -> None:
        if self.method not in METHODS:
            raise InvalidInputError(f"method must be one of {', '.join(METHODS)}, got {self.method!r}")
        if self.lora_r < 1 or self.batch_size < 1 or self.max_length < 16:
            raise InvalidInputError("lora_r and batch_size must be >= 1 and max_length >= 16")


@dataclass
class LocalTrainReport:
    out_dir: str
    method: str
    base_model: str
    device: str
    steps: int
    losses: list[float] = field(default_factory=list)
    seconds: float = 0.0
    trainable_parameters: int = 0
    examples: int = 0
    merged_dir: str = ""

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def _require() -> tuple[Any, Any, Any, Any, Any]:
    try:
        import datasets
        import peft
        import torch
        import transformers
        import trl
    except ImportError as e:
        raise MissingDependencyError("trl, peft, datasets and torch (local LoRA fine-tuning)", "finetune") from e
    return torch, transformers, peft, trl, datasets


def _records(path: Path, method: str) -> list[dict[str, Any]]:
    if not path.is_file():
        raise InvalidInputError(f"{path}: training file not found")
    want = ("messages",) if method == "sft" else ("prompt", "chosen", "rejected")
    out = []
    for n, line in enumerate(path.read_text(encoding="utf-8").splitlines(), start=1):
        if not line.strip():
            continue
        try:
            record = json.loads(line)
        except ValueError as e:
            raise InvalidInputError(f"{path}:{n}: not valid JSON ({e})") from None
        if not isinstance(record, dict) or any(k not in record for k in want):
            raise InvalidInputError(
                f"{path}:{n}: a {method} example needs {', '.join(want)} "
                f"(write it with kvgraph finetune export --format {method})"
            )
        out.append({k: record[k] for k in want})
    if not out:
        raise InvalidInputError(f"{path}: no training example")
    return out


def train_local(
    model_dir: str | os.PathLike[str],
    train_file: str | os.PathLike[str],
    out_dir: str | os.PathLike[str],
    config: LocalTrainConfig | None = None,
    progress: Callable[[int, int, float], None] | None = None,
) -> LocalTrainReport:
    """Train a LoRA adapter on ``train_file`` for the causal LM in ``model_dir``; save it in ``out_dir``.

    ``progress(step, total_steps, loss)`` is called at every logged step. Returns the losses seen.
    """
    cfg = config or LocalTrainConfig()
    cfg.check()
    model_path = Path(model_dir)
    if not (model_path / "config.json").is_file():
        raise InvalidInputError(f"{model_path}: not a Hugging Face model directory (no config.json)")
    records = _records(Path(train_file), cfg.method)  # bad input fails before the heavy imports
    torch, transformers, peft, trl, datasets = _require()
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    transformers.set_seed(cfg.seed)
    tokenizer = transformers.AutoTokenizer.from_pretrained(str(model_path))
    if not getattr(tokenizer, "chat_template", None):
        raise InvalidInputError(f"{model_path}: the tokenizer has no chat template; use a chat (instruct) model")
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token
    model = transformers.AutoModelForCausalLM.from_pretrained(str(model_path))
    lora = peft.LoraConfig(
        r=cfg.lora_r,
        lora_alpha=cfg.lora_alpha,
        lora_dropout=cfg.lora_dropout,
        target_modules=cfg.target_modules,
        task_type="CAUSAL_LM",
    )
    cuda = bool(torch.cuda.is_available())
    common: dict[str, Any] = {
        "output_dir": str(Path(out_dir) / "checkpoints"),
        "num_train_epochs": cfg.epochs,
        "max_steps": cfg.max_steps,
        "learning_rate": cfg.learning_rate,
        "per_device_train_batch_size": cfg.batch_size,
        "gradient_accumulation_steps": cfg.gradient_accumulation,
        "logging_steps": 1,
        "save_strategy": "no",
        "report_to": "none",
        "seed": cfg.seed,
        "max_length": cfg.max_length,
        "use_cpu": not cuda,
        "bf16": cuda and bool(torch.cuda.is_bf16_supported()),
        "dataloader_num_workers": 0,
        "disable_tqdm": True,
    }
    losses: list[float] = []

    class _Losses(transformers.TrainerCallback):  # type: ignore[misc,name-defined]
        def on_log(self, args: Any, state: Any, control: Any, logs: dict[str, Any] | None = None, **kw: Any) -> None:
            if logs and "loss" in logs:
                losses.append(float(logs["loss"]))
                if progress is not None:
                    progress(int(state.global_step), int(state.max_steps), float(logs["loss"]))

    datasets.disable_progress_bars()
    dataset = datasets.Dataset.from_list(records)
    if cfg.method == "sft":
        args = trl.SFTConfig(**common)
        trainer = trl.SFTTrainer(
            model=model,
            args=args,
            train_dataset=dataset,
            processing_class=tokenizer,
            peft_config=lora,
            callbacks=[_Losses()],
        )
    else:
        args = trl.DPOConfig(**common, beta=cfg.beta)
        trainer = trl.DPOTrainer(
            model=model,
            args=args,
            train_dataset=dataset,
            processing_class=tokenizer,
            peft_config=lora,
            callbacks=[_Losses()],
        )
    trainer.remove_callback(transformers.PrinterCallback)  # the losses come through progress() instead
    trainable = sum(p.numel() for p in trainer.model.parameters() if p.requires_grad)
    t0 = time.perf_counter()
    trainer.train()
    seconds = time.perf_counter() - t0
    out = Path(out_dir)
    shutil.rmtree(out / "checkpoints", ignore_errors=True)  # save_strategy "no": only the trainer's scratch
    trainer.model.save_pretrained(str(out))
    tokenizer.save_pretrained(str(out))
    report = LocalTrainReport(
        out_dir=str(out.resolve()),
        method=cfg.method,
        base_model=str(model_path.resolve()),
        device="cuda" if cuda else "cpu",
        steps=int(trainer.state.global_step),
        losses=losses,
        seconds=round(seconds, 2),
        trainable_parameters=int(trainable),
        examples=len(records),
    )
    if cfg.merge:
        merged = out / "merged"
        trainer.model.merge_and_unload().save_pretrained(str(merged))
        tokenizer.save_pretrained(str(merged))
        report.merged_dir = str(merged.resolve())
    (out / "kvgraph_finetune.json").write_text(json.dumps(report.to_dict(), indent=1) + "\n", encoding="utf-8")
    return report
