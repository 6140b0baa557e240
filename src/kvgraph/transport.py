"""HTTP plumbing shared by the OpenAI-compatible chat and embedding clients.

One place for: base-URL checks, the bearer key, retries with backoff, turning HTTP and
transport failures into clear kvgraph errors, and Server-Sent Events parsing.

Secrets: the API key is only ever put into the Authorization header, and credentials
written into the base URL (``http://user:key@host/v1``) only into the requests. Neither is
ever part of a message, a repr or a log line: ``base_url`` and every URL in a message show
the userinfo as ``***``, and any text quoted from a server or an exception goes through
:func:`redact_secrets` first, which removes the known secrets (the key, the URL's
credentials, secret-looking extra header values) and anything that looks like one (URL
userinfo, ``Bearer`` tokens, ``api_key=`` parameters, ``Authorization:`` values), because
some servers echo the key they rejected.
"""

from __future__ import annotations

import email.utils
import functools
import json
import logging
import random
import re
import ssl
import threading
import time
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any
from urllib.parse import unquote

import httpx

from kvgraph.errors import InvalidInputError, LLMError, LLMUnavailableError


@dataclass
class Usage:
    """Running token totals reported by a server (``usage`` of OpenAI responses), for cost display.

    Servers that report no usage leave the token counts at zero; ``requests`` still counts.
    """

    prompt_tokens: int = 0
    completion_tokens: int = 0
    requests: int = 0
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False, compare=False)

    @property
    def total_tokens(self) -> int:
        return self.prompt_tokens + self.completion_tokens

    def add(self, usage: Mapping[str, Any] | None) -> None:
        """Count one successful request and the token counts of its ``usage`` object, if any."""
        prompt = completion = 0
        if isinstance(usage, Mapping):
            prompt = _as_int(usage.get("prompt_tokens"))
            completion = _as_int(usage.get("completion_tokens"))
        with self._lock:  # clients may be shared between threads
            self.prompt_tokens += prompt
            self.completion_tokens += completion
            self.requests += 1


def _as_int(value: object) -> int:
    # Servers sometimes send null or omit fields; a bool is not a token count.
    return value if isinstance(value, int) and not isinstance(value, bool) and value > 0 else 0


log = logging.getLogger("kvgraph.llm")

EXCERPT_CHARS = 200
_RETRY_STATUSES = frozenset({429, 500, 502, 503, 504})
_LOOPBACK_HOSTS = frozenset({"localhost", "127.0.0.1", "::1"})


def _sleep(seconds: float) -> None:
    # Module-level indirection so tests can record backoff delays instead of waiting.
    time.sleep(seconds)


@functools.cache
def _ssl_context(trust_env: bool) -> ssl.SSLContext:
    # Loading the CA bundle takes ~30 ms; share one context instead of paying it per client.
    return httpx.create_ssl_context(trust_env=trust_env)


# scheme://USERINFO@ in any text; the userinfo may hold a password or an API key.
_URL_USERINFO = re.compile(r"(?i)\b([a-z][a-z0-9+.\-]*://)[^/?#\s@'\"<>]+@")
# ?api_key=..., &token=...: query parameters that carry credentials.
_SECRET_PARAM = re.compile(
    r"(?i)([?&;](?:api[_-]?key|apikey|key|token|access[_-]?token|auth|password|passwd|pwd|secret|sig|signature)=)"
    r"[^&;#\s'\"]+"
)
# Authorization: Bearer ..., api-key: ..., "api_key": "..." as headers or JSON echo them.
_SECRET_FIELD = re.compile(
    r"(?i)\b(authorization|proxy-authorization|api[_-]?key|x-api-key|password|secret)"
    r"(['\"]?\s*[:=]\s*['\"]?)(?:(?:bearer|basic|token)\s+)?[^\s'\",;}&]+"
)
_BEARER = re.compile(r"(?i)\b(bearer|basic)\s+[a-z0-9._~+/\-]+=*")
_SECRET_HEADER = re.compile(r"(?i)auth|key|token|secret|password|cookie")


def redact_secrets(text: str, secrets: Iterable[str] = ()) -> str:
    """``text`` without the given secrets and without anything that looks like a credential."""
    for secret in sorted({s for s in secrets if s}, key=len, reverse=True):
        text = text.replace(secret, "***")
    text = _URL_USERINFO.sub(r"\1***@", text)
    text = _SECRET_PARAM.sub(r"\1***", text)
    text = _SECRET_FIELD.sub(r"\1\2***", text)
    return _BEARER.sub(r"\1 ***", text)


def _userinfo_span(url: str) -> tuple[int, int] | None:
    """Where the userinfo of ``url`` is (start, index of its "@"), also for a URL written without scheme."""
    scheme_end = url.find("://")
    start = scheme_end + 3 if scheme_end != -1 else 0
    at = url.find("@", start)
    end = min((i for i in (url.find(c, start) for c in "/?#") if i != -1), default=len(url))
    return (start, at) if at != -1 and at < end else None


def url_secrets(url: str) -> list[str]:
    """The credentials in a URL's userinfo (as written and percent-decoded), to redact from messages."""
    span = _userinfo_span(url)
    if span is None:
        return []
    userinfo = url[span[0] : span[1]]
    user, _, password = userinfo.partition(":")
    parts = [userinfo, password] if password else [userinfo, user]  # a user without password may be the key
    return [p for part in parts for p in {part, unquote(part)} if p]


def _split_userinfo(url: str) -> tuple[str, tuple[str, str] | None]:
    """(the URL without userinfo, (user, password) percent-decoded, or None when there is none)."""
    span = _userinfo_span(url)
    if span is None:
        return url, None
    user, _, password = url[span[0] : span[1]].partition(":")
    return url[: span[0]] + url[span[1] + 1 :], (unquote(user), unquote(password))


def redact_url(url: str) -> str:
    """A URL fit for messages: userinfo as ``***``, credential query parameters as ``***``."""
    return redact_secrets(url, url_secrets(url))


def normalize_base_url(base_url: str) -> str:
    """Strip whitespace and trailing slashes; reject URLs without an http(s) scheme and host.

    The result keeps any credentials of the URL (requests need them): show it with :func:`redact_url`.
    """
    url = base_url.strip().rstrip("/")
    try:
        parsed = httpx.URL(url)
    except httpx.InvalidURL as e:
        raise InvalidInputError(
            f"invalid base URL {redact_url(url)!r}: {redact_secrets(str(e), url_secrets(url))}"
        ) from None
    if parsed.scheme not in ("http", "https") or not parsed.host:
        raise InvalidInputError(
            f"invalid base URL {redact_url(url)!r}: expected http(s)://host[:port]/prefix, e.g. http://localhost:8000/v1"
        )
    return url


def excerpt(text: str, limit: int = EXCERPT_CHARS) -> str:
    text = " ".join(text.split())
    return text if len(text) <= limit else text[:limit] + "..."


def iter_sse_data(lines: Iterable[str]) -> Iterator[str]:
    """Yield the data of each Server-Sent Event in ``lines`` (which carry no line endings).

    Follows the SSE rules that matter here: ``data:`` with or without the space (TGI omits
    it), several data lines of one event joined by newlines, comment lines (``: keep-alive``)
    and other fields (``event:``, ``id:``, ``retry:``) ignored, a blank line ends an event.
    """
    data: list[str] = []
    for line in lines:
        if not line:
            if data:
                yield "\n".join(data)
                data = []
            continue
        if line.startswith(":"):
            continue
        name, _, value = line.partition(":")
        if name == "data":
            data.append(value[1:] if value.startswith(" ") else value)
    if data:  # a stream that ends without the final blank line
        yield "\n".join(data)


def json_text(value: object) -> str:
    """``value`` as text for a message: strings as they are, anything else as JSON."""
    if isinstance(value, str):
        return value
    try:
        return json.dumps(value)
    except (TypeError, ValueError):
        return repr(value)


def server_message(resp: httpx.Response) -> str:
    """The error text of an error response: OpenAI ``{"error": {"message": ...}}`` or variants, else the body."""
    try:
        body = resp.json()
    except ValueError:
        return resp.text or resp.reason_phrase
    if isinstance(body, Mapping):
        err = body.get("error", body.get("detail", body.get("message")))
        if isinstance(err, Mapping):
            err = err.get("message", err)
        if err is not None:
            return json_text(err)
    return json_text(body)


class ApiClient:
    """A retrying JSON client for one OpenAI-compatible server.

    ``what`` names the server kind in messages ("LLM", "embedding"); ``url_setting`` and
    ``key_setting`` name where the user configures the URL and key, for the hints.
    """

    def __init__(
        self,
        base_url: str,
        *,
        model: str,
        api_key: str | None,
        timeout: float,
        max_retries: int,
        extra_headers: Mapping[str, str] | None,
        transport: httpx.BaseTransport | None,
        backoff_base: float,
        backoff_max: float,
        retry_after_max: float,
        what: str,
        url_setting: str,
        key_setting: str,
    ) -> None:
        if max_retries < 0:
            raise InvalidInputError(f"max_retries must be >= 0, got {max_retries}")
        if timeout <= 0:
            raise InvalidInputError(f"timeout must be > 0 seconds, got {timeout}")
        # Credentials in the URL become HTTP Basic auth of the client, and requests go to the URL
        # without them: httpx logs every request URL. Everything shown uses base_url.
        given = normalize_base_url(base_url)
        self.base_url = redact_url(given)
        self._request_base, basic = _split_userinfo(given)
        self.model = model
        self.timeout = timeout
        self.max_retries = max_retries
        self.backoff_base = backoff_base
        self.backoff_max = backoff_max
        self.retry_after_max = retry_after_max
        self.what = what
        self.url_setting = url_setting
        self.key_setting = key_setting
        self._api_key = api_key or None
        self._secrets = [*url_secrets(given), *([self._api_key] if self._api_key else [])]
        self._secrets += [v for k, v in (extra_headers or {}).items() if _SECRET_HEADER.search(k)]
        headers = {"User-Agent": "kvgraph", "Accept": "application/json"}
        if self._api_key:
            headers["Authorization"] = f"Bearer {self._api_key}"
        headers.update(extra_headers or {})
        host = httpx.URL(self._request_base).host
        # A proxy from the environment would swallow requests to a local server (vLLM on
        # localhost); remote servers keep the usual proxy settings.
        trust_env = not (host in _LOOPBACK_HOSTS or host.startswith("127."))
        self._client = httpx.Client(
            auth=httpx.BasicAuth(*basic) if basic else None,
            headers=headers,
            timeout=httpx.Timeout(timeout),
            transport=transport,
            trust_env=trust_env,
            verify=_ssl_context(trust_env),
        )

    @property
    def has_key(self) -> bool:
        return self._api_key is not None

    def url(self, path: str) -> str:
        """The URL of ``path`` as shown in messages (credentials redacted)."""
        return f"{self.base_url}/{path.lstrip('/')}"

    def _request_url(self, path: str) -> str:
        return f"{self._request_base}/{path.lstrip('/')}"

    def close(self) -> None:
        self._client.close()

    def redact(self, text: str) -> str:
        """``text`` with the API key, the URL's credentials and anything credential-like replaced by ***."""
        return redact_secrets(text, self._secrets)

    def quote(self, text: str) -> str:
        """A short excerpt of server text for a message, key removed first (cutting could split the key)."""
        return excerpt(self.redact(text))

    # -- requests -------------------------------------------------------------------------

    def get_json(self, path: str) -> Any:
        return self.parse_json(self._send("GET", path, None, stream=False), self.url(path))

    def post_json(self, path: str, payload: Mapping[str, Any]) -> Any:
        return self.parse_json(self._send("POST", path, payload, stream=False), self.url(path))

    def open_stream(self, path: str, payload: Mapping[str, Any]) -> httpx.Response:
        """POST and return the open 2xx response for streaming; the caller must close it.

        Retries happen only here, before any data was read: a stream that breaks off later
        cannot be replayed without repeating text the caller already has.
        """
        return self._send("POST", path, payload, stream=True, accept="text/event-stream")

    def parse_json(self, resp: httpx.Response, url: str) -> Any:
        try:
            return resp.json()
        except ValueError:
            raise LLMError(
                f"the {self.what} server at {url} returned invalid JSON (HTTP {resp.status_code}): "
                f"{self.quote(resp.text)!r}"
            ) from None

    def _send(
        self,
        method: str,
        path: str,
        payload: Mapping[str, Any] | None,
        *,
        stream: bool,
        accept: str | None = None,
    ) -> httpx.Response:
        url = self.url(path)
        headers = {"Accept": accept} if accept else None
        attempts = self.max_retries + 1
        for attempt in range(1, attempts + 1):
            final = attempt == attempts
            try:
                request = self._client.build_request(method, self._request_url(path), json=payload, headers=headers)
                resp = self._client.send(request, stream=stream)
            except httpx.TransportError as e:  # connect errors, timeouts, dropped connections
                if final:
                    raise self.transport_error(e, url, attempts) from e
                reason = type(e).__name__
                delay = self._backoff(attempt)
            else:
                if resp.status_code < 400:
                    return resp
                if stream:
                    resp.read()  # so the error body can be quoted
                resp.close()
                if final or resp.status_code not in _RETRY_STATUSES:
                    raise self.status_error(resp, url, attempt)
                reason = f"HTTP {resp.status_code}"
                retry_after = self._retry_after(resp)
                delay = retry_after if retry_after is not None else self._backoff(attempt)
            log.warning(
                "%s %s failed (%s); retry %d of %d in %.2fs", method, url, reason, attempt, self.max_retries, delay
            )
            _sleep(delay)
        raise AssertionError("unreachable")  # the loop returns or raises on the final attempt

    def _backoff(self, attempt: int) -> float:
        # Exponential backoff with jitter, so clients that failed together do not retry together.
        return float(min(self.backoff_max, self.backoff_base * 2 ** (attempt - 1)) * random.uniform(0.5, 1.0))

    def _retry_after(self, resp: httpx.Response) -> float | None:
        """Seconds from a ``Retry-After`` header (seconds or HTTP date), capped at ``retry_after_max``."""
        value = resp.headers.get("Retry-After")
        if not value:
            return None
        try:
            seconds = float(value)
        except ValueError:
            try:
                when = email.utils.parsedate_to_datetime(value)
            except (TypeError, ValueError):
                return None
            if when.tzinfo is None:
                when = when.replace(tzinfo=UTC)
            seconds = (when - datetime.now(UTC)).total_seconds()
        return min(max(seconds, 0.0), self.retry_after_max)

    # -- errors ---------------------------------------------------------------------------

    def transport_error(self, e: httpx.TransportError, url: str, attempts: int = 1) -> LLMError:
        """The kvgraph error for a connection failure, timeout or broken connection."""
        tries = f" after {attempts} attempts" if attempts > 1 else ""
        if isinstance(e, httpx.ConnectError | httpx.ConnectTimeout):
            return LLMUnavailableError(
                self.redact(
                    f"cannot reach the {self.what} server at {url}{tries} ({str(e) or type(e).__name__}): "
                    f"start the server or set {self.url_setting} to its address, including the API prefix "
                    "such as /v1"
                )
            )
        if isinstance(e, httpx.TimeoutException):
            return LLMError(
                self.redact(
                    f"the {self.what} server at {url} did not answer within {self.timeout:g}s{tries}: "
                    "it may be overloaded or still loading the model; raise the timeout or try again"
                )
            )
        return LLMError(self.redact(f"the connection to the {self.what} server at {url} failed{tries}: {e!r}"))

    def status_error(self, resp: httpx.Response, url: str, attempts: int = 1) -> LLMError:
        """The kvgraph error for an HTTP error response."""
        code = resp.status_code
        tries = f" after {attempts} attempts" if attempts > 1 else ""
        if code in (401, 403):
            # The server's own text is left out on purpose: servers echo (parts of) the key.
            if self.has_key:
                msg = f"the {self.what} server at {url} rejected the API key (HTTP {code}); check {self.key_setting}"
            else:
                msg = f"the {self.what} server at {url} requires an API key (HTTP {code}); set {self.key_setting}"
            return LLMError(msg, status_code=code)
        detail = self.quote(server_message(resp))
        if code == 404:
            msg = (
                f"model {self.model!r} or path not found at {url} (HTTP 404: {detail}); check the model name "
                f"(GET {self.url('models')} lists the served models) and that the base URL includes the API "
                "prefix such as /v1"
            )
        elif code == 429:
            msg = f"the {self.what} server at {url} is rate limiting requests (HTTP 429){tries}: {detail}"
        elif code >= 500:
            msg = f"the {self.what} server at {url} failed (HTTP {code}){tries}: {detail}"
        else:
            msg = f"the {self.what} server at {url} rejected the request (HTTP {code}): {detail}"
        return LLMError(self.redact(msg), status_code=code)
