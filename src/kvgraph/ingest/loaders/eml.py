"""E-mail messages (.eml, standard library): the message, then its readable attachments.

The message is one document: ``Subject:``, ``From:``, ``To:``, ``Cc:`` and ``Date:`` lines,
then the body (the plain-text part, else the HTML part through the HTML loader), then an
``Attachments:`` line naming them. Its metadata has ``subject`` (also ``title``), ``from``,
``to``, ``cc`` (addresses as written, comma-separated), ``date`` (ISO 8601), ``message_id`` and
``attachments`` (the file names). Its id is the file's path, as for a text file.

Each attachment of a type kvgraph reads (a PDF, a Word file, a CSV...) is loaded with that type's
loader and its documents follow the message's: ids ``FILE#attachment=K`` plus the loader's own
suffix (``FILE#attachment=2&page=3``), metadata the loader's (``page``, ``section``...) with the
message's file provenance and ``attachment`` (its name). An attachment that cannot be read is
named in the message's ``Attachments:`` line and left out; the message still counts.
"""

from __future__ import annotations

import logging
import mimetypes
import re
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING

from kvgraph.errors import KvgraphError
from kvgraph.ingest.loaders.common import SUPPORTED_EXTENSIONS, base_metadata, clean_text
from kvgraph.ingest.loaders.files import UnreadableFileError, display_path, open_regular
from kvgraph.ingest.loaders.html import extract_html
from kvgraph.schema import Document, Metadata, Scalar

if TYPE_CHECKING:  # the email package costs ~25 ms to import: loaded when an e-mail is read
    from email.message import EmailMessage

__all__ = ["AttachmentLoader", "prepare_email"]

log = logging.getLogger(__name__)

# Loads one file into documents: how the message hands its attachments to the other loaders.
AttachmentLoader = Callable[[Path], Iterator[list[Document]]]

_UNSAFE_NAME = re.compile(r"[^\w.\- ()+,@&]")
_MAX_NAME = 120


def _header(message: EmailMessage, name: str) -> str:
    values = message.get_all(name) or []
    return ", ".join(" ".join(clean_text(str(v)).split()) for v in values if str(v).strip())


def _iso_date(value: str) -> str:
    try:
        from email.utils import parsedate_to_datetime

        return parsedate_to_datetime(value).isoformat()
    except (TypeError, ValueError, IndexError):
        return value


def _part_text(part: EmailMessage) -> str:
    try:
        content = part.get_content()
    except (LookupError, UnicodeError, AssertionError):  # an unknown charset or a broken encoding
        payload = part.get_payload(decode=True)
        content = payload.decode("utf-8", "replace") if isinstance(payload, bytes) else ""
    if not isinstance(content, str):
        return ""
    if part.get_content_type() == "text/html":
        return extract_html(content)[0]
    return clean_text(content).strip()


def _safe_name(raw: str | None, number: int, content_type: str) -> str:
    """A plain file name for an attachment, with the extension its loader is chosen by."""
    name = Path((raw or "").replace("\\", "/")).name.strip()
    name = _UNSAFE_NAME.sub("_", name)[-_MAX_NAME:].lstrip(".")
    if not name:
        name = f"attachment-{number}{mimetypes.guess_extension(content_type) or ''}"
    return name


def _parse(path: Path) -> EmailMessage:
    import email
    import email.policy

    with open_regular(path) as f:
        # policy.default makes EmailMessage objects (get_body, iter_attachments, decoded headers)
        return email.message_from_binary_file(f, policy=email.policy.default)


def prepare_email(path: Path, load_attachment: AttachmentLoader) -> Iterator[Document]:
    """Check the message now (it has headers and some text or attachment); return its documents lazily."""
    from email.message import EmailMessage

    message = _parse(path)
    if not any(message.get(h) for h in ("From", "To", "Subject", "Date", "Message-ID")):
        raise UnreadableFileError(path, "not an e-mail message (no From, To, Subject, Date or Message-ID header)")
    body_part = message.get_body(preferencelist=("plain", "html"))
    body = _part_text(body_part) if isinstance(body_part, EmailMessage) else ""
    attachments = [p for p in message.iter_attachments() if isinstance(p, EmailMessage)]
    subject = _header(message, "Subject")
    if not body.strip() and not subject and not attachments:
        raise UnreadableFileError(path, "no text in the e-mail (no subject, body or attachment)")
    return _documents(path, message, body, attachments, load_attachment)


def _documents(
    path: Path,
    message: EmailMessage,
    body: str,
    attachments: list[EmailMessage],
    load_attachment: AttachmentLoader,
) -> Iterator[Document]:
    base = base_metadata(path, "email")
    doc_id = display_path(path)
    fields = {name.lower(): _header(message, name) for name in ("Subject", "From", "To", "Cc", "Date")}
    if fields["date"]:
        fields["date"] = _iso_date(fields["date"])
    names = [_safe_name(p.get_filename(), k, p.get_content_type()) for k, p in enumerate(attachments, start=1)]
    lines = [f"{name.capitalize()}: {value}" for name, value in fields.items() if value]
    text = "\n".join(lines)
    if body.strip():
        text += f"\n\n{body.strip()}"
    if names:
        text += "\n\nAttachments: " + ", ".join(names)
    meta: Metadata = {**base, **{k: v for k, v in fields.items() if v}}
    if fields["subject"]:
        meta["title"] = fields["subject"]
    message_id = _header(message, "Message-ID")
    if message_id:
        meta["message_id"] = message_id
    if names:
        listed: list[Scalar] = list(names)
        meta["attachments"] = listed
    yield Document(id=doc_id, text=text.strip(), metadata=meta)
    readable = [(k, p, n) for k, (p, n) in enumerate(zip(attachments, names), start=1)]
    readable = [(k, p, n) for k, p, n in readable if Path(n).suffix.lower() in SUPPORTED_EXTENSIONS]
    if not readable:
        return
    with tempfile.TemporaryDirectory(prefix="kvgraph-eml-") as folder:
        for number, part, name in readable:
            yield from _attachment(path, base, doc_id, number, part, name, Path(folder), load_attachment)


def _attachment(
    path: Path,
    base: Metadata,
    doc_id: str,
    number: int,
    part: EmailMessage,
    name: str,
    folder: Path,
    load_attachment: AttachmentLoader,
) -> Iterator[Document]:
    from email.message import EmailMessage

    if part.get_content_type() == "message/rfc822":
        inner = part.get_content()
        data = inner.as_bytes() if isinstance(inner, EmailMessage) else b""
    else:
        payload = part.get_payload(decode=True)
        data = payload if isinstance(payload, bytes) else b""
    target = folder / f"{number}-{name}"
    target.write_bytes(data)
    prefix = display_path(target)
    try:
        for batch in load_attachment(target):
            for doc in batch:
                suffix = doc.id[len(prefix) :] if doc.id.startswith(prefix) else ""
                meta: Metadata = {**doc.metadata, **base, "attachment": name}
                if "title" not in doc.metadata:
                    meta["title"] = name
                yield Document(
                    id=f"{doc_id}#attachment={number}" + suffix.replace("#", "&", 1), text=doc.text, metadata=meta
                )
    except KvgraphError as exc:  # an unreadable attachment is left out; the message still counts
        log.info("%s: attachment %s left out: %s", display_path(path), name, getattr(exc, "reason", exc))
    finally:
        target.unlink(missing_ok=True)
