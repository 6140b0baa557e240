"""Fine-tuning through the OpenAI API (or any server speaking its Files and Fine-tuning endpoints).

The steps: upload the training file (``POST /files``, purpose ``fine-tune``), create the job
(``POST /fine_tuning/jobs``), poll it (``GET /fine_tuning/jobs/{id}`` and its ``/events``) until
it succeeds, fails or is cancelled. A record of the run (file ids, job id, status, the fine-tuned
model's name, the error) is written to a JSON file after every change, so an interrupted wait is
resumed from the job id (``resume``) without uploading or paying again.

Errors name the endpoint and what the server said; the API key is sent only in the
Authorization header and is scrubbed from anything quoted back.
"""

from __future__ import annotations

import json
import os
import random
import time
from collections.abc import Callable, Mapping
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import httpx

from kvgraph.errors import InvalidInputError, LLMError, LLMUnavailableError
from kvgraph.transport import excerpt, normalize_base_url, redact_secrets, redact_url, server_message, url_secrets

TERMINAL = ("succeeded", "failed", "cancelled")
RETRY_STATUSES = (429, 500, 502, 503, 504)


class OpenAIFineTuning:
    """A small client of the Files and Fine-tuning endpoints. ``base_url`` includes the API prefix (/v1)."""

    def __init__(
        self,
        base_url: str,
        api_key: str | None = None,
        *,
        timeout: float = 120.0,
        max_retries: int = 2,
        backoff_base: float = 1.0,
        transport: httpx.BaseTransport | None = None,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        self.base_url = normalize_base_url(base_url)
        self._key = api_key or None
        self.max_retries = max_retries
        self.backoff_base = backoff_base
        self.sleep = sleep
        headers = {"User-Agent": "kvgraph", "Accept": "application/json"}
        if self._key:
            headers["Authorization"] = f"Bearer {self._key}"
        self._client = httpx.Client(headers=headers, timeout=httpx.Timeout(timeout), transport=transport)

    def __repr__(self) -> str:
        return f"OpenAIFineTuning({redact_url(self.base_url)!r})"

    def close(self) -> None:
        self._client.close()

    def __enter__(self) -> OpenAIFineTuning:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- HTTP -----------------------------------------------------------------------------

    def _redact(self, text: str) -> str:
        """``text`` without the API key, the base URL's credentials or anything credential-like."""
        return redact_secrets(text, [self._key or "", *url_secrets(self.base_url)])

    def _request(self, method: str, path: str, **kwargs: Any) -> Any:
        url = f"{self.base_url}/{path.lstrip('/')}"
        what = f"{method} {url}"
        for attempt in range(self.max_retries + 1):
            final = attempt == self.max_retries
            try:
                resp = self._client.request(method, url, **kwargs)
            except httpx.ConnectError as e:
                if final:
                    raise LLMUnavailableError(
                        self._redact(f"fine-tuning API: cannot reach {what} ({e}); check KVGRAPH_LLM_BASE_URL")
                    ) from None
            except httpx.TransportError as e:
                if final:
                    raise LLMError(self._redact(f"fine-tuning API: {what} failed: {e!r}")) from None
            else:
                if resp.status_code < 400:
                    try:
                        return resp.json()
                    except ValueError:
                        raise LLMError(
                            f"fine-tuning API: {what} returned invalid JSON (HTTP {resp.status_code}): "
                            f"{excerpt(self._redact(resp.text))!r}"
                        ) from None
                if final or resp.status_code not in RETRY_STATUSES:
                    raise self._status_error(resp, what)
            self.sleep(self.backoff_base * 2**attempt * random.uniform(0.5, 1.0))
        raise AssertionError("unreachable")

    def _status_error(self, resp: httpx.Response, what: str) -> LLMError:
        code = resp.status_code
        if code in (401, 403):  # the server's text is left out: servers echo the key
            hint = "rejected the API key" if self._key else "requires an API key"
            return LLMError(
                f"fine-tuning API: {what} {hint} (HTTP {code}); set KVGRAPH_LLM_API_KEY (or OPENAI_API_KEY)",
                status_code=code,
            )
        detail = excerpt(self._redact(server_message(resp)))
        return LLMError(f"fine-tuning API: {what} failed (HTTP {code}): {detail}", status_code=code)

    # -- endpoints ------------------------------------------------------------------------

    def upload(self, path: str | os.PathLike[str], purpose: str = "fine-tune") -> dict[str, Any]:
        """Upload a JSONL file; returns the file object (its ``id`` names it to the job)."""
        p = Path(path)
        if not p.is_file():
            raise InvalidInputError(f"{p}: training file not found")
        data = p.read_bytes()
        result: dict[str, Any] = self._request(
            "POST", "files", data={"purpose": purpose}, files={"file": (p.name, data, "application/jsonl")}
        )
        return result

    def create_job(
        self,
        training_file: str,
        model: str,
        validation_file: str | None = None,
        suffix: str | None = None,
        seed: int | None = None,
        method: Mapping[str, Any] | None = None,
    ) -> dict[str, Any]:
        body: dict[str, Any] = {"training_file": training_file, "model": model}
        if validation_file:
            body["validation_file"] = validation_file
        if suffix:
            body["suffix"] = suffix
        if seed is not None:
            body["seed"] = seed
        if method:
            body["method"] = dict(method)
        result: dict[str, Any] = self._request("POST", "fine_tuning/jobs", json=body)
        return result

    def job(self, job_id: str) -> dict[str, Any]:
        result: dict[str, Any] = self._request("GET", f"fine_tuning/jobs/{job_id}")
        return result

    def events(self, job_id: str, limit: int = 100) -> list[dict[str, Any]]:
        """The job's latest ``limit`` events, oldest first (the API lists them newest first)."""
        data = self._request("GET", f"fine_tuning/jobs/{job_id}/events", params={"limit": limit})
        events = data.get("data") if isinstance(data, dict) else None
        return list(reversed(events)) if isinstance(events, list) else []

    def cancel(self, job_id: str) -> dict[str, Any]:
        result: dict[str, Any] = self._request("POST", f"fine_tuning/jobs/{job_id}/cancel")
        return result


def client_from_env(env: Mapping[str, str] | None = None, **kwargs: Any) -> OpenAIFineTuning:
    """The client for the LLM server of the environment (``KVGRAPH_LLM_BASE_URL``/``OPENAI_BASE_URL`` and key)."""
    env = os.environ if env is None else env
    base = (env.get("KVGRAPH_LLM_BASE_URL") or env.get("OPENAI_BASE_URL") or "").strip()
    if not base:
        raise LLMUnavailableError(
            "fine-tuning with --backend openai needs the API's address: set KVGRAPH_LLM_BASE_URL "
            "(https://api.openai.com/v1, or another server with the same endpoints) and KVGRAPH_LLM_API_KEY"
        )
    key = (env.get("KVGRAPH_LLM_API_KEY") or env.get("OPENAI_API_KEY") or "").strip() or None
    return OpenAIFineTuning(base, key, **kwargs)


@dataclass
class FineTuneRecord:
    """The state of an API fine-tuning run, kept in a JSON file so that it can be resumed."""

    backend: str = "openai"
    base_url: str = ""
    model: str = ""
    training_path: str = ""
    training_file: str = ""
    validation_file: str = ""
    job_id: str = ""
    status: str = ""
    fine_tuned_model: str = ""
    trained_tokens: int | None = None
    error: dict[str, Any] | None = None
    events: list[str] = field(default_factory=list)

    def save(self, path: Path) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
        tmp.write_text(json.dumps(asdict(self), indent=1) + "\n", encoding="utf-8")
        os.replace(tmp, path)

    @classmethod
    def load(cls, path: Path) -> FineTuneRecord:
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, ValueError) as e:
            raise InvalidInputError(f"{path}: cannot read the fine-tuning record ({e})") from None
        known = {k: v for k, v in data.items() if k in cls.__dataclass_fields__}
        return cls(**known)


def run_finetune(
    client: OpenAIFineTuning,
    record_path: str | os.PathLike[str],
    *,
    training_path: str | os.PathLike[str] | None = None,
    model: str | None = None,
    validation_path: str | os.PathLike[str] | None = None,
    suffix: str | None = None,
    seed: int | None = None,
    resume: str | None = None,
    poll_interval: float = 10.0,
    timeout: float | None = None,
    on_update: Callable[[FineTuneRecord, list[dict[str, Any]]], None] | None = None,
) -> FineTuneRecord:
    """Upload, create the job and wait for it; or, with ``resume`` (a job id, or ``"record"`` for the one
    in ``record_path``), only wait. Returns the record; raises LLMError naming the job's error if it failed.
    """
    path = Path(record_path)
    if resume:
        record = FineTuneRecord.load(path) if path.exists() else FineTuneRecord(base_url=client.base_url)
        if resume != "record":
            record.job_id = resume
        if not record.job_id:
            raise InvalidInputError(f"{path}: no job id recorded to resume; pass the job id (ftjob-...)")
    else:
        if not training_path or not model:
            raise InvalidInputError("a new fine-tuning job needs a training file and a base model")
        record = FineTuneRecord(base_url=client.base_url, model=model, training_path=str(training_path))
        record.training_file = str(client.upload(training_path)["id"])
        record.save(path)
        if validation_path:
            record.validation_file = str(client.upload(validation_path)["id"])
            record.save(path)
        job = client.create_job(record.training_file, model, record.validation_file or None, suffix, seed)
        record.job_id = str(job["id"])
        record.status = str(job.get("status") or "")
        record.save(path)
    deadline = None if timeout is None else time.monotonic() + timeout
    seen: set[str] = set()
    while True:
        job = client.job(record.job_id)
        record.status = str(job.get("status") or "")
        record.model = str(job.get("model") or record.model)
        record.fine_tuned_model = str(job.get("fine_tuned_model") or "")
        record.trained_tokens = job.get("trained_tokens")
        record.error = job.get("error") or None
        new = [e for e in client.events(record.job_id) if str(e.get("id")) not in seen]
        seen.update(str(e.get("id")) for e in new)
        record.events += [str(e.get("message", "")) for e in new]
        record.save(path)
        if on_update is not None:
            on_update(record, new)
        if record.status in TERMINAL:
            break
        if deadline is not None and time.monotonic() > deadline:
            raise LLMError(
                f"fine-tuning job {record.job_id} is still {record.status}; resume the wait later "
                f"(kvgraph finetune train --backend openai --resume {record.job_id})"
            )
        client.sleep(poll_interval)
    if record.status != "succeeded":
        error = record.error or {}
        raise LLMError(
            f"fine-tuning job {record.job_id} {record.status}"
            + (f": {error.get('code')}: {error.get('message')}" if error else "")
            + f" (record in {path})"
        )
    return record
