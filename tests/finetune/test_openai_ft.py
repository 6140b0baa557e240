"""`finetune train --backend openai` against a real loopback server speaking the Files and Fine-tuning API."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

import pytest

from kvgraph.errors import InvalidInputError, LLMError, LLMUnavailableError
from kvgraph.finetune.openai_ft import FineTuneRecord, OpenAIFineTuning, client_from_env, run_finetune
from kvgraph.testing.openai_server import FakeOpenAIServer

Start = Callable[..., FakeOpenAIServer]


def training_file(path: Path, n: int = 12, broken: bool = False) -> Path:
    rows = [
        {
            "messages": [
                {"role": "system", "content": "Answer from the context."},
                {"role": "user", "content": f"Context: [1] item {i} is blue\n\nQuestion: colour of item {i}?"},
                {"role": "assistant", "content": f"Item {i} is blue [1]."},
            ]
        }
        for i in range(n)
    ]
    lines = [json.dumps(r) for r in rows]
    if broken:
        lines[3] = '{"prompt": "no messages here"}'
    path.write_text("\n".join(lines) + "\n")
    return path


def client(server: FakeOpenAIServer, key: str | None = None) -> OpenAIFineTuning:
    return OpenAIFineTuning(server.base_url, key, backoff_base=0.0, sleep=lambda s: None)


def test_upload_create_poll_and_record_the_model(tmp_path: Path, start_openai_server: Start) -> None:
    server = start_openai_server(require_key="sk-secret-123", job_running_polls=3)
    record_path = tmp_path / "job.json"
    updates: list[str] = []
    with client(server, "sk-secret-123") as c:
        record = run_finetune(
            c,
            record_path,
            training_path=training_file(tmp_path / "train.jsonl"),
            validation_path=training_file(tmp_path / "val.jsonl", 10),
            model="test-model",
            suffix="llama2",
            poll_interval=0,
            on_update=lambda rec, events: updates.append(rec.status),
        )
    assert record.status == "succeeded"
    assert record.fine_tuned_model.startswith("ft:test-model:kvgraph:llama2:")
    assert updates == ["queued", "running", "running", "running", "succeeded"]
    assert any("successfully completed" in e for e in record.events)
    assert record.trained_tokens and record.training_file and record.validation_file
    saved = FineTuneRecord.load(record_path)
    assert saved.fine_tuned_model == record.fine_tuned_model and saved.status == "succeeded"
    upload = server.requests_to("/v1/files")[0]
    assert upload.body["purpose"] == "fine-tune" and upload.body["file"]["filename"] == "train.jsonl"
    assert upload.headers["content-type"].startswith("multipart/form-data")
    created = server.requests_to("/v1/fine_tuning/jobs")[0].body
    assert created == {
        "training_file": record.training_file,
        "validation_file": record.validation_file,
        "model": "test-model",
        "suffix": "llama2",
    }
    assert record.fine_tuned_model in server.models  # the new model is served from now on
    assert "sk-secret-123" not in record_path.read_text()


def test_a_failed_job_raises_with_its_error_and_is_recorded(tmp_path: Path, start_openai_server: Start) -> None:
    server = start_openai_server(job_failure={"code": "quota_exceeded", "message": "Monthly quota reached"})
    with client(server) as c, pytest.raises(LLMError, match=r"ftjob-0001 failed: quota_exceeded: Monthly quota"):
        run_finetune(
            c,
            tmp_path / "job.json",
            training_path=training_file(tmp_path / "t.jsonl"),
            model="test-model",
            poll_interval=0,
        )
    record = FineTuneRecord.load(tmp_path / "job.json")
    assert record.status == "failed" and record.error and record.error["code"] == "quota_exceeded"
    assert not record.fine_tuned_model


def test_an_invalid_training_file_fails_the_job(tmp_path: Path, start_openai_server: Start) -> None:
    server = start_openai_server()
    with client(server) as c, pytest.raises(LLMError, match=r"invalid_training_file: line 4 has no 'messages'"):
        run_finetune(
            c,
            tmp_path / "job.json",
            training_path=training_file(tmp_path / "t.jsonl", broken=True),
            model="test-model",
            poll_interval=0,
        )


def test_resume_waits_for_the_recorded_job_without_uploading_again(tmp_path: Path, start_openai_server: Start) -> None:
    server = start_openai_server(job_running_polls=50)
    record_path = tmp_path / "job.json"
    with client(server) as c:
        with pytest.raises(LLMError, match=r"still (queued|running); resume the wait later .*--resume ftjob-0001"):
            run_finetune(
                c,
                record_path,
                training_path=training_file(tmp_path / "t.jsonl"),
                model="test-model",
                poll_interval=0,
                timeout=0,
            )
        assert FineTuneRecord.load(record_path).status in ("queued", "running")
        server.job_running_polls = 2
        uploads = len(server.requests_to("/v1/files"))
        record = run_finetune(c, record_path, resume="record", poll_interval=0)
        assert record.status == "succeeded" and record.fine_tuned_model
        assert len(server.requests_to("/v1/files")) == uploads
        assert len(server.requests_to("/v1/fine_tuning/jobs")) == 1
        again = run_finetune(c, tmp_path / "other.json", resume=record.job_id, poll_interval=0)
        assert again.fine_tuned_model == record.fine_tuned_model
        with pytest.raises(InvalidInputError, match="no job id recorded"):
            run_finetune(c, tmp_path / "missing.json", resume="record")


def test_api_errors_are_named_and_keys_scrubbed(tmp_path: Path, start_openai_server: Start) -> None:
    server = start_openai_server(fine_tunable=("gpt-base",))
    train = training_file(tmp_path / "t.jsonl")
    with client(server) as c:
        with pytest.raises(LLMError, match=r"POST .*/v1/fine_tuning/jobs failed \(HTTP 400\): Model test-model is not"):
            run_finetune(c, tmp_path / "job.json", training_path=train, model="test-model", poll_interval=0)
        with pytest.raises(LLMError, match=r"GET .*/fine_tuning/jobs/ftjob-9999 failed \(HTTP 404\)"):
            c.job("ftjob-9999")
        before = len(server.requests_to("/v1/files"))
        server.fail_next(2, 503)  # retried: the third attempt goes through
        uploaded = c.upload(train)
        assert uploaded["bytes"] == train.stat().st_size
        assert len(server.requests_to("/v1/files")) == before + 3
        assert c.job(c.create_job(uploaded["id"], "gpt-base")["id"])["model"] == "gpt-base"
    keyed = start_openai_server(require_key="sk-right")
    with OpenAIFineTuning(keyed.base_url, "sk-wrong-key", max_retries=0) as c:
        with pytest.raises(LLMError) as err:
            c.upload(train)
        assert "rejected the API key" in str(err.value) and "sk-wrong-key" not in str(err.value)


def test_client_from_env_needs_an_address(unused_port: int) -> None:
    with pytest.raises(LLMUnavailableError, match="KVGRAPH_LLM_BASE_URL"):
        client_from_env({})
    env = {"KVGRAPH_LLM_BASE_URL": f"http://127.0.0.1:{unused_port}/v1"}
    with client_from_env(env, max_retries=0) as c, pytest.raises(LLMUnavailableError, match="cannot reach"):
        c.job("ftjob-1")


def test_credentials_in_the_base_url_never_reach_an_error(unused_port: int) -> None:
    url = f"http://alice:ft-url-secret-51x@127.0.0.1:{unused_port}/v1"  # nothing listens there
    client = OpenAIFineTuning(url, api_key="sk-ft-key-77q", max_retries=0)
    with pytest.raises(LLMUnavailableError) as err:
        client.job("ftjob-1")
    client.close()
    shown = f"{err.value} {client!r}"
    assert "127.0.0.1" in shown  # the message still says where
    assert "ft-url-secret-51x" not in shown and "sk-ft-key-77q" not in shown
