"""A tiny dependency-free PDF writer for tests, benchmarks and sample files.

It writes real, minimal PDF 1.4 files: one Helvetica (standard Type 1, WinAnsiEncoding)
text page per string, image-only pages (a filled rectangle, no text), and RC4-encrypted
files (standard security handler, revision 2) that need a password to open. PDFium
extracts the text back exactly (words and order), which the tests check.
"""

from __future__ import annotations

import hashlib
import os
import struct
import textwrap
from pathlib import Path

PAGE_WIDTH = 612  # US Letter, in points
PAGE_HEIGHT = 792
MARGIN = 72
WRAP_COLUMNS = 90

# Padding string of the standard security handler (PDF 1.7, 7.6.3.3, algorithm 2).
_PAD = bytes.fromhex("28bf4e5e4e758a4164004e56fffa01082e2e00b6d0683e802f0ca9fe6453697a")


def _escape(text: str) -> bytes:
    """A PDF literal string body in WinAnsi: backslash and parentheses escaped."""
    try:
        raw = text.encode("cp1252")
    except UnicodeEncodeError as exc:
        raise ValueError(f"write_pdf: {text[exc.start]!r} cannot be written in WinAnsi (Helvetica) text") from None
    return raw.replace(b"\\", b"\\\\").replace(b"(", b"\\(").replace(b")", b"\\)")


def _wrap(page: str) -> list[str]:
    lines: list[str] = []
    for line in page.replace("\r\n", "\n").replace("\r", "\n").expandtabs(4).split("\n"):
        wrapped = textwrap.wrap(line, WRAP_COLUMNS, break_on_hyphens=False) if line.strip() else []
        lines.extend(wrapped or [""])
    return lines


def _text_stream(page: str, font_size: float) -> tuple[bytes, int]:
    """The content stream for one page of text, and the page height it needs."""
    lines = _wrap(page)
    leading = round(font_size * 1.3, 2)
    # Long pages get a taller page rather than overflowing (one input string = one PDF page).
    height = max(PAGE_HEIGHT, int(2 * MARGIN + leading * len(lines)) + 1)
    ops = [b"BT", f"/F1 {font_size} Tf {leading} TL {MARGIN} {height - MARGIN} Td".encode()]
    for n, line in enumerate(lines):
        if n:
            ops.append(b"T*")  # next line, moved down by the leading
        if line:
            ops.append(b"(" + _escape(line) + b") Tj")
    ops.append(b"ET")
    return b"\n".join(ops) + b"\n", height


def _pdf_string(text: str) -> bytes:
    """A text string for the Info dictionary: UTF-16BE with BOM, so any title round-trips."""
    return b"\xfe\xff" + text.encode("utf-16-be")


def _rc4(key: bytes, data: bytes) -> bytes:
    s = list(range(256))
    j = 0
    for i in range(256):
        j = (j + s[i] + key[i % len(key)]) % 256
        s[i], s[j] = s[j], s[i]
    out = bytearray()
    i = j = 0
    for byte in data:
        i = (i + 1) % 256
        j = (j + s[i]) % 256
        s[i], s[j] = s[j], s[i]
        out.append(byte ^ s[(s[i] + s[j]) % 256])
    return bytes(out)


class _Writer:
    """Collects numbered objects and serialises them with a correct xref table."""

    def __init__(self, encrypt_key: bytes | None = None) -> None:
        self.objects: list[bytes] = []
        self.encrypt_key = encrypt_key

    def reserve(self) -> int:
        self.objects.append(b"")
        return len(self.objects)

    def _crypt(self, num: int, data: bytes) -> bytes:
        if self.encrypt_key is None:
            return data
        # Algorithm 1: per-object key from the file key, object number and generation 0.
        obj_key = hashlib.md5(self.encrypt_key + struct.pack("<I", num)[:3] + b"\x00\x00").digest()
        return _rc4(obj_key[: min(len(self.encrypt_key) + 5, 16)], data)

    def string(self, num: int, data: bytes) -> bytes:
        """A string belonging to object ``num``, as a hex string (encrypted if the file is)."""
        return b"<" + self._crypt(num, data).hex().encode() + b">"

    def set(self, num: int, body: bytes) -> None:
        self.objects[num - 1] = body

    def add(self, body: bytes) -> int:
        num = self.reserve()
        self.set(num, body)
        return num

    def add_stream(self, data: bytes) -> int:
        num = self.reserve()
        data = self._crypt(num, data)
        self.set(num, b"<< /Length %d >>\nstream\n" % len(data) + data + b"\nendstream")
        return num

    def write(self, path: Path, root: int, info: int | None, trailer_extra: bytes = b"") -> None:
        out = bytearray(b"%PDF-1.4\n%\xe2\xe3\xcf\xd3\n")
        offsets = []
        for num, body in enumerate(self.objects, start=1):
            offsets.append(len(out))
            out += b"%d 0 obj\n" % num + body + b"\nendobj\n"
        xref = len(out)
        out += b"xref\n0 %d\n0000000000 65535 f \n" % (len(self.objects) + 1)
        out += b"".join(b"%010d 00000 n \n" % off for off in offsets)
        info_ref = b" /Info %d 0 R" % info if info else b""
        out += b"trailer\n<< /Size %d /Root %d 0 R%s%s >>\n" % (len(self.objects) + 1, root, info_ref, trailer_extra)
        out += b"startxref\n%d\n%%%%EOF\n" % xref
        Path(path).write_bytes(bytes(out))


def _build(
    path: str | os.PathLike[str],
    contents: list[tuple[bytes, int]],
    title: str | None,
    writer: _Writer,
    trailer_extra: bytes = b"",
) -> None:
    catalog, pages = writer.reserve(), writer.reserve()
    font = writer.add(b"<< /Type /Font /Subtype /Type1 /BaseFont /Helvetica /Encoding /WinAnsiEncoding >>")
    kids = []
    for stream, height in contents:
        content = writer.add_stream(stream)
        kids.append(
            writer.add(
                b"<< /Type /Page /Parent %d 0 R /MediaBox [0 0 %d %d] /Resources << /Font << /F1 %d 0 R >> >> "
                b"/Contents %d 0 R >>" % (pages, PAGE_WIDTH, height, font, content)
            )
        )
    kid_refs = b" ".join(b"%d 0 R" % k for k in kids)
    writer.set(pages, b"<< /Type /Pages /Kids [%s] /Count %d >>" % (kid_refs, len(kids)))
    writer.set(catalog, b"<< /Type /Catalog /Pages %d 0 R >>" % pages)
    info = None
    if title is not None:
        info = writer.reserve()
        writer.set(info, b"<< /Title %s /Producer (kvgraph.testing.pdf) >>" % writer.string(info, _pdf_string(title)))
    writer.write(Path(path), catalog, info, trailer_extra)


def write_pdf(path: str | os.PathLike[str], pages: list[str], title: str | None = None, font_size: float = 11) -> Path:
    """Write a PDF with one page of Helvetica text per string in ``pages`` (WinAnsi characters only).

    Lines are wrapped at ~90 characters; ``\\n`` starts a new line. Returns the path.
    """
    if not pages:
        raise ValueError("write_pdf: at least one page is needed")
    _build(path, [_text_stream(p, font_size) for p in pages], title, _Writer())
    return Path(path)


def write_image_only_pdf(path: str | os.PathLike[str], n_pages: int = 1) -> Path:
    """Write a PDF whose pages only have a filled rectangle: no text layer, like a scan."""
    rect = b"0.2 0.4 0.8 rg 100 200 300 400 re f\n"
    _build(path, [(rect, PAGE_HEIGHT)] * n_pages, None, _Writer())
    return Path(path)


def write_encrypted_pdf(
    path: str | os.PathLike[str], pages: list[str], user_password: str = "secret", owner_password: str = "owner"
) -> Path:
    """Write a genuinely encrypted PDF (RC4 40-bit, standard security handler revision 2).

    Opening it needs ``user_password``; strings and streams are really encrypted.
    """
    if not user_password:
        raise ValueError("write_encrypted_pdf: an empty user password would open without one")
    user = (user_password.encode("latin-1") + _PAD)[:32]
    owner = (owner_password.encode("latin-1") + _PAD)[:32]
    permissions = -4  # all permissions (bits 1-2 must be 0)
    file_id = hashlib.md5(os.fsencode(os.fspath(path)) + os.urandom(8)).digest()
    # Algorithm 3: the O entry (owner key encrypts the padded user password).
    o_entry = _rc4(hashlib.md5(owner).digest()[:5], user)
    # Algorithm 2: the file key, from the user password, O, P and the file ID.
    key = hashlib.md5(user + o_entry + struct.pack("<i", permissions) + file_id).digest()[:5]
    # Algorithm 4 (revision 2): the U entry is the padding string encrypted with the key.
    u_entry = _rc4(key, _PAD)
    writer = _Writer(encrypt_key=key)
    encrypt = writer.add(
        b"<< /Filter /Standard /V 1 /R 2 /O <%s> /U <%s> /P %d >>"
        % (o_entry.hex().encode(), u_entry.hex().encode(), permissions)
    )
    # The encryption dictionary's own strings are never encrypted; it was added before the key was used.
    trailer = b" /Encrypt %d 0 R /ID [<%s> <%s>]" % (encrypt, file_id.hex().encode(), file_id.hex().encode())
    _build(path, [_text_stream(p, 11) for p in pages], None, writer, trailer)
    return Path(path)
