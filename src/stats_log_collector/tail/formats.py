"""Raw console bytes to kubelet log lines: the pure, I/O-free and speed-minded core of the tailing engine.

Two jobs, kept apart so each can be tested and measured alone:

1. :class:`LineAssembler` cuts the byte stream of a console into *pieces*, the unit kubelet's log formats
   carry. It is fed chunks exactly as they were read from the file and returns the pieces that are
   complete:

   * lines are split on ``\\n``; a ``\\r`` right before the ``\\n`` is dropped (consoles write CRLF), even
     when the ``\\r`` ends one chunk and the ``\\n`` starts the next one: a trailing ``\\r`` is held back;
   * empty lines are kept;
   * a line longer than ``max_piece`` bytes (16 KiB, containerd's ``max_container_log_line_size``) is cut
     into pieces of at most that size, all but the last *partial*. The cut is moved back by up to 3 bytes so
     that it never falls inside a UTF-8 character: CRI readers see whole characters, and the JSON format
     (which must be text) decodes each piece to exactly what the whole line would decode to;
   * an unterminated tail is held until its newline arrives, or until the caller decides the console is idle
     (1 s without data) and calls :meth:`LineAssembler.flush`, which emits it as a partial piece; the rest of
     the line follows later, its last piece complete when the newline comes.

   :attr:`LineAssembler.pending_bytes` is the number of input bytes read but not yet emitted, so a checkpoint
   may record ``offset_read - pending_bytes``: that offset never splits anything not yet written, and a fresh
   assembler fed from there produces the same pieces the old one would have (nothing lost, nothing twice).

2. :func:`encode_cri` and :func:`encode_json` turn one batch of pieces, which share one timestamp (the time
   the batch was read), into the bytes to append to the output file; :func:`encode_raw` turns it back into
   plain console text for ``console-tail``, whose stdout the container runtime makes into the CRI file.

Why the code looks the way it does: the budget is about a quarter of rsyslog's CPU, i.e. roughly 1 s per
million 100-byte lines for the whole logger (``bench/bench_virtlet_log.py``), while one Python-level
operation per line already costs a good part of that. So everything works on whole chunks with C-implemented
bytes methods: a batch of complete lines stays one ``bytes`` object (the lines joined by ``\\n``, which is
the input itself minus CR), long lines are detected with one ``rfind`` per 16 KiB rather than one test per
line, and encoding is a single ``replace`` of ``\\n`` by "end of one record + start of the next". JSON
escaping is done on the whole batch too: one ``translate`` finds which of the 33 characters that need
escaping occur at all (none, in plain text), and each one that does costs one more ``replace`` pass. Python
objects per line are only built in the rare cases (long lines, partial pieces) and when someone iterates a
batch.

Invalid UTF-8 in the JSON format is replaced the way Go's ``encoding/json`` (kubelet's decoder) does it: one
U+FFFD per byte that does not start a valid sequence. That is *not* Python's ``errors="replace"``, which
uses one U+FFFD for a truncated sequence (``b"\\xe2\\x82A"`` is ``"\\ufffdA"`` in Python but
``"\\ufffd\\ufffdA"`` in Go); :func:`go_decode` does the Go thing.
"""

from __future__ import annotations

import codecs
import time
from collections.abc import Callable, Iterable, Iterator
from typing import Final, Literal

__all__ = [
    "ENCODERS",
    "MAX_PIECE_BYTES",
    "Encoder",
    "LineAssembler",
    "Pieces",
    "Stream",
    "encode_cri",
    "encode_json",
    "encode_raw",
    "format_timestamp",
    "go_decode",
    "now_timestamp",
]

#: Longest piece content, in bytes (containerd's ``max_container_log_line_size``).
MAX_PIECE_BYTES: Final = 16384

Stream = Literal["stdout", "stderr"]

_CR: Final = 0x0D


# --------------------------------------------------------------------------------------------------------
# UTF-8 the way Go decodes it


def _go_replace(exc: UnicodeError) -> tuple[str, int]:
    """Codec error handler: one U+FFFD per byte of the invalid range.

    CPython reports the *maximal subpart* of an ill-formed sequence as one error (a lead byte and the
    continuation bytes that were still acceptable). Go's ``utf8.DecodeRune`` rejects such a sequence one byte
    at a time, and every byte after the lead is a continuation byte, which is invalid on its own: so Go
    emits exactly ``end - start`` replacement characters for the same range, then both resume at ``end``.
    """
    if not isinstance(exc, UnicodeDecodeError):
        raise exc
    return "\ufffd" * (exc.end - exc.start), exc.end


_GO_REPLACE: Final = "stats_log_collector.go_replace"
codecs.register_error(_GO_REPLACE, _go_replace)


def go_decode(data: bytes) -> str:
    """Decode UTF-8 as Go does: every byte that does not start a valid sequence becomes one U+FFFD.

    Unlike Python's ``errors="replace"`` this is local: decoding two halves separately gives the same text as
    decoding the whole, as long as the cut is not inside a valid character.
    """
    return data.decode("utf-8", _GO_REPLACE)


def _utf8_length(lead: int) -> int:
    """Length of the sequence that ``lead`` starts, 1 for ASCII and for bytes that cannot start one."""
    if lead < 0xC2:
        return 1
    if lead < 0xE0:
        return 2
    if lead < 0xF0:
        return 3
    if lead < 0xF5:
        return 4
    return 1


def _boundary_before(buf: bytes, k: int, lo: int) -> int:
    """The largest cut position ``<= k`` (and ``> lo``) that does not split a UTF-8 character.

    Only the 3 bytes before ``k`` are looked at: if one of them is a lead byte whose character would extend
    past ``k`` the cut moves back to it. Any position holding a byte that is not a continuation byte is a safe
    cut for Go's decoder, so moving back is always safe; it may be needless when the character turns out to
    be invalid, which only makes a piece a few bytes shorter.
    """
    j = k - 1
    stop = max(k - 4, lo)
    while j > stop:
        b = buf[j]
        if b & 0xC0 != 0x80:  # not a continuation byte
            return j if j + _utf8_length(b) > k else k
        j -= 1
    return k


# --------------------------------------------------------------------------------------------------------
# Pieces


class Pieces:
    """An ordered batch of pieces: ``(content, is_partial)``, content never containing ``\\n``.

    Kept as one ``bytes`` object, :attr:`blob`, holding the contents joined by ``\\n`` (for a batch of
    complete lines that is a slice of the input), plus the indices of the partial pieces. Iterating yields the
    ``(content, is_partial)`` pairs; :attr:`contents` splits the blob into a list.
    """

    __slots__ = ("_blob", "_count", "partial")

    _blob: bytes
    _count: int | None
    #: Indices of the partial pieces, ascending.
    partial: tuple[int, ...]

    def __init__(self, blob: bytes = b"", *, count: int | None = None, partial: tuple[int, ...] = ()) -> None:
        """Wrap ``blob`` (contents joined by ``\\n``); ``count`` 0 means an empty batch, None "count them"."""
        self._blob = blob
        self._count = count
        self.partial = partial

    @classmethod
    def of(cls, contents: list[bytes], partial: Iterable[int] = ()) -> Pieces:
        """Build a batch from a list of contents and the indices of the partial ones."""
        if not contents:
            return _EMPTY
        blob = b"\n".join(contents)
        if blob.count(b"\n") != len(contents) - 1:  # a content holding "\n" would become two pieces
            raise ValueError("a piece content must not contain b'\\n'")
        indices = tuple(sorted(set(partial)))
        if indices and (indices[0] < 0 or indices[-1] >= len(contents)):
            raise ValueError("partial index out of range")
        return cls(blob, count=len(contents), partial=indices)

    @classmethod
    def from_pairs(cls, pairs: Iterable[tuple[bytes, bool]]) -> Pieces:
        """Build a batch from ``(content, is_partial)`` pairs."""
        contents: list[bytes] = []
        partial: list[int] = []
        for content, is_partial in pairs:
            if is_partial:
                partial.append(len(contents))
            contents.append(content)
        return cls.of(contents, partial)

    @property
    def blob(self) -> bytes:
        """All contents joined by ``\\n``."""
        return self._blob

    @property
    def contents(self) -> list[bytes]:
        """The contents, in order."""
        return self._blob.split(b"\n") if len(self) else []

    def __len__(self) -> int:
        if self._count is None:
            self._count = self._blob.count(b"\n") + 1
        return self._count

    def __bool__(self) -> bool:
        return self._count != 0

    def __iter__(self) -> Iterator[tuple[bytes, bool]]:
        partial = set(self.partial)
        for i, content in enumerate(self.contents):
            yield content, i in partial

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Pieces):
            return NotImplemented
        return len(self) == len(other) and self._blob == other._blob and self.partial == other.partial

    __hash__ = None  # type: ignore[assignment]  # mutable-looking value object, like list

    def __repr__(self) -> str:
        return f"Pieces.from_pairs({list(self)!r})"


_EMPTY: Final = Pieces(count=0)


# --------------------------------------------------------------------------------------------------------
# Line assembler


class LineAssembler:
    """Cuts a console byte stream, fed in arbitrary chunks, into kubelet pieces (see the module docstring).

    The only state is the held, not yet emitted, end of the input (at most ``max_piece + 1`` bytes: a full
    piece's worth plus a ``\\r`` that may turn out to precede a ``\\n``), so a fresh assembler fed from the
    committed offset continues exactly where this one stands.
    """

    __slots__ = ("_held", "_max")

    def __init__(self, max_piece: int = MAX_PIECE_BYTES) -> None:
        """``max_piece``: longest piece content (16384 as containerd; smaller values are for tests)."""
        if max_piece < 4:
            raise ValueError("max_piece must be at least 4 (a UTF-8 character must fit in a piece)")
        self._max = max_piece
        self._held = b""

    @property
    def max_piece(self) -> int:
        """Longest piece content, in bytes."""
        return self._max

    @property
    def pending_bytes(self) -> int:
        """Input bytes read but not emitted yet (a held ``\\r`` included): commit ``offset_read - this``."""
        return len(self._held)

    @property
    def held(self) -> bytes:
        """The input bytes read but not emitted yet (the last ``pending_bytes`` bytes fed)."""
        return self._held

    def feed(self, chunk: bytes) -> Pieces:
        """Take the next bytes of the stream; return the pieces that are now complete."""
        if not chunk:
            return _EMPTY
        data = self._held + chunk if self._held else chunk
        if b"\r" in data:
            # A "\r" at the very end stays (it is held below); every "\r\n" is inside data, the CR at a chunk
            # end having been held and now prepended.
            data = data.replace(b"\r\n", b"\n")
        m = self._max
        last_nl = data.rfind(b"\n")
        if last_nl < 0:
            contents: list[bytes] = []
            partial: list[int] = []
            self._held = self._cut_tail(data, contents, partial)
            return Pieces.of(contents, partial) if contents else _EMPTY

        body = data[:last_nl]
        tail = data[last_nl + 1 :]
        long_tail = len(tail) > m
        if not long_tail and _find_long_line(body, m) < 0:
            # The common case: complete lines, none too long. The batch is the body itself.
            self._held = tail
            return Pieces(body)

        contents = []
        partial = []
        for line in body.split(b"\n"):
            if len(line) > m:
                self._cut_line(line, contents, partial)
            else:
                contents.append(line)
        self._held = self._cut_tail(tail, contents, partial)
        return Pieces.of(contents, partial)

    def flush(self, *, final: bool = False) -> Pieces:
        """Emit the held unterminated tail as a partial piece (the console has been idle).

        Still held back afterwards, unless ``final``: a trailing ``\\r`` (the ``\\n`` may follow) and the
        start of a UTF-8 character whose remaining bytes have not arrived. ``final=True`` (the source is gone
        or finished) emits everything.
        """
        held = self._held
        if not held:
            return _EMPTY
        n = len(held)
        if final:
            k = n
        elif held[-1] == _CR:
            k = n - 1
        else:
            k = _boundary_before(held, n, -1)
        if k == 0:
            return _EMPTY
        contents: list[bytes] = []
        partial: list[int] = []
        pos = 0
        while k - pos > self._max:
            cut = _boundary_before(held, pos + self._max, pos)
            partial.append(len(contents))
            contents.append(held[pos:cut])
            pos = cut
        partial.append(len(contents))
        contents.append(held[pos:k])
        self._held = held[k:]
        return Pieces.of(contents, partial)

    def _cut_line(self, line: bytes, contents: list[bytes], partial: list[int]) -> None:
        """Append a complete line longer than max_piece as partial pieces plus a final complete one."""
        m = self._max
        pos = 0
        n = len(line)
        while n - pos > m:
            cut = _boundary_before(line, pos + m, pos)
            partial.append(len(contents))
            contents.append(line[pos:cut])
            pos = cut
        contents.append(line[pos:])

    def _cut_tail(self, tail: bytes, contents: list[bytes], partial: list[int]) -> bytes:
        """Emit from an unterminated tail the pieces known to be partial; return what stays held."""
        m = self._max
        pos = 0
        n = len(tail)
        # More than m content bytes are certain when m + 1 bytes follow pos and the last of them is not a
        # "\r" (which a "\n" may still turn into nothing); with m + 2 bytes, byte m is content for sure.
        while n - pos > m + 1 or (n - pos == m + 1 and tail[-1] != _CR):
            cut = _boundary_before(tail, pos + m, pos)
            partial.append(len(contents))
            contents.append(tail[pos:cut])
            pos = cut
        return tail[pos:] if pos else tail


def _find_long_line(body: bytes, m: int) -> int:
    """Start of the first line of ``body`` (lines joined by ``\\n``) longer than ``m`` bytes, or -1.

    One ``rfind`` per window of ``m + 1`` bytes: the last newline in the window ends every line that starts
    before it, and all of those are short enough.
    """
    pos = 0
    n = len(body)
    while n - pos > m:
        q = body.rfind(b"\n", pos, pos + m + 1)
        if q < 0:
            return pos
        pos = q + 1
    return -1


# --------------------------------------------------------------------------------------------------------
# Timestamps

_sec_cache: tuple[int, bytes] = (-1, b"")


def format_timestamp(ns_since_epoch: int) -> bytes:
    """RFC3339Nano, UTC, fixed 9-digit fraction, as containerd writes it: ``2026-11-23T10:00:00.123456789Z``.

    Call it once per batch; the date part is cached per second.
    """
    global _sec_cache
    sec, frac = divmod(ns_since_epoch, 1_000_000_000)
    cached_sec, prefix = _sec_cache
    if sec != cached_sec:
        t = time.gmtime(sec)
        if not 0 <= t.tm_year <= 9999:
            raise ValueError(f"year {t.tm_year} cannot be written as RFC3339")
        prefix = (
            f"{t.tm_year:04d}-{t.tm_mon:02d}-{t.tm_mday:02d}T{t.tm_hour:02d}:{t.tm_min:02d}:{t.tm_sec:02d}."
        ).encode("ascii")
        _sec_cache = (sec, prefix)
    return prefix + b"%09dZ" % frac


def now_timestamp() -> bytes:
    """:func:`format_timestamp` of the current time."""
    return format_timestamp(time.time_ns())


# --------------------------------------------------------------------------------------------------------
# Encoders

Encoder = Callable[[Pieces, bytes], bytes]


def _segments(pieces: Pieces, full: Callable[[list[bytes]], bytes], part: Callable[[bytes], bytes]) -> bytes:
    """Encode a batch with partial pieces: runs of complete pieces in bulk, partial ones one by one."""
    contents = pieces.contents
    out: list[bytes] = []
    start = 0
    for i in pieces.partial:
        if i > start:
            out.append(full(contents[start:i]))
        out.append(part(contents[i]))
        start = i + 1
    if start < len(contents):
        out.append(full(contents[start:]))
    return b"".join(out)


def encode_cri(pieces: Pieces, ts: bytes, stream: Stream = "stdout") -> bytes:
    """CRI text lines: ``<ts> <stream> F <content>\\n`` (``P`` for partial pieces), content as raw bytes."""
    if not pieces:
        return b""
    head = b"%s %s " % (ts, stream.encode("ascii"))
    full_head = head + b"F "
    sep = b"\n" + full_head
    if not pieces.partial:
        return b"".join((full_head, pieces.blob.replace(b"\n", sep), b"\n"))
    part_head = head + b"P "
    return _segments(
        pieces,
        lambda run: b"".join((full_head, sep.join(run), b"\n")),
        lambda content: b"".join((part_head, content, b"\n")),
    )


# Bytes that JSON strings cannot hold raw: controls, quote and backslash ("\n" never occurs in a content,
# it is the separator of the blob being escaped).
_JSON_SPECIAL: Final = frozenset([*range(0x20), 0x22, 0x5C]) - {0x0A}
_JSON_NOT_SPECIAL: Final = bytes(b for b in range(256) if b not in _JSON_SPECIAL)
_JSON_ESCAPE: Final = {
    b: {0x22: b'\\"', 0x5C: b"\\\\", 0x08: b"\\b", 0x09: b"\\t", 0x0C: b"\\f", 0x0D: b"\\r"}.get(
        b, b"\\u%04x" % b
    )
    for b in _JSON_SPECIAL
}


def _json_text(blob: bytes) -> bytes:
    """``blob`` as the inside of JSON strings: valid UTF-8 (invalid bytes as Go decodes them), escaped."""
    if not blob.isascii():
        try:
            blob.decode("utf-8")
        except UnicodeDecodeError:
            blob = go_decode(blob).encode("utf-8")
    specials = blob.translate(None, _JSON_NOT_SPECIAL)
    if not specials:
        return blob
    present = set(specials)
    if 0x5C in present:  # first: the other escapes add backslashes
        blob = blob.replace(b"\\", b"\\\\")
        present.discard(0x5C)
    for b in present:
        blob = blob.replace(bytes((b,)), _JSON_ESCAPE[b])
    return blob


def encode_json(pieces: Pieces, ts: bytes, stream: Stream = "stdout") -> bytes:
    """Docker json-file lines: ``{"log":"<text>\\n","stream":"stdout","time":"<ts>"}\\n``.

    A partial piece's ``log`` has no trailing ``\\n``. The output is valid UTF-8: bytes that are not become
    U+FFFD as Go's decoder (kubelet) would show them; control characters, such as the ESC of terminal
    escape codes, are written ``\\u001b`` and the like.
    """
    if not pieces:
        return b""
    text = _json_text(pieces.blob)
    head = b'{"log":"'
    rest = b'","stream":"%s","time":"%s"}\n' % (stream.encode("ascii"), ts)
    full_tail = b"\\n" + rest
    if not pieces.partial:
        return b"".join((head, text.replace(b"\n", full_tail + head), full_tail))
    escaped = Pieces(text, count=len(pieces), partial=pieces.partial)
    sep = full_tail + head
    return _segments(
        escaped,
        lambda run: b"".join((head, sep.join(run), full_tail)),
        lambda content: b"".join((head, content, rest)),
    )


def encode_raw(pieces: Pieces, ts: bytes) -> bytes:
    """Plain text, for a stream read by a container runtime: each content, ``\\n`` after complete pieces only.

    A partial piece gets no newline, so the rest of its line (the next piece, maybe in a later batch) goes
    on where it stopped and the text reads as the console wrote it (CRLF folded). ``ts`` is not used.
    """
    if not pieces:
        return b""
    if not pieces.partial:
        return pieces.blob + b"\n"
    return _segments(pieces, lambda run: b"\n".join(run) + b"\n", lambda content: content)


#: The encoder for each ``LOG_FORMAT`` value, and ``raw`` for console-tail's stdout.
ENCODERS: Final[dict[str, Encoder]] = {"cri": encode_cri, "json": encode_json, "raw": encode_raw}
