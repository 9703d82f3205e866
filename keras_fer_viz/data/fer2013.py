"""The FER2013 CSV loader (Goodfellow et al. 2013, the Kaggle ICML 2013 challenge).

FER2013 is a CSV file of 35,887 rows: an emotion label 0-6, the 48x48
grayscale pixels as 2,304 space-separated integers, and the Usage split
(Training, PublicTest, PrivateTest). `load_fer2013` reads it and its variant
``emotion, Usage, pixels`` with a parser vectorised over the file's bytes:
newlines and commas are found with numpy, and the pixel text is turned into
numbers chunk by chunk (a few hundred rows at a time, in reused buffers, on
a small thread pool, since numpy releases the GIL). There is no Python loop
over pixels, and none over rows but to slice the short label and usage
fields. Every bad row is reported with its line number.
"""

from __future__ import annotations

import os
import threading
import warnings
from concurrent.futures import ThreadPoolExecutor
from typing import Literal

import numpy as np

__all__ = ["EMOTIONS", "USAGES", "IMAGE_SIZE", "load_fer2013", "load_fer2013_usage"]

EMOTIONS = ("Angry", "Disgust", "Fear", "Happy", "Sad", "Surprise", "Neutral")
USAGES = ("Training", "PublicTest", "PrivateTest")
IMAGE_SIZE = 48
_PIXELS = IMAGE_SIZE * IMAGE_SIZE
# Rows parsed at once (~2 MB of text): the working buffers stay in cache and
# are reused, which matters as much as the arithmetic (fresh memory costs a
# page fault per 4 kB).
_CHUNK_ROWS = 256
_BLOCK = 1 << 22  # bytes scanned at once for newlines and commas
_NEWLINE, _COMMA, _SPACE = 10, 44, 32
_SEPARATORS = (ord("\t"), ord("\r"), ord('"'))  # allowed between pixels, besides spaces


def load_fer2013(
    path: str | os.PathLike[str],
    usage: Literal["Training", "PublicTest", "PrivateTest"] | None = None,
    errors: Literal["raise", "skip"] = "raise",
) -> tuple[np.ndarray, np.ndarray]:
    """Loads the FER2013 CSV file as images and labels.

    Reads the Kaggle file ``fer2013.csv`` (header ``emotion,pixels,Usage``)
    and its variants: ``icml_face_data.csv`` (``emotion, Usage, pixels``,
    spaces in the header) and files without a Usage column (Kaggle's
    ``train.csv``). Column names are matched without case and surrounding
    spaces; the pixels may be quoted. Blank lines are ignored.

    Args:
        path: the CSV file, a `str` or `os.PathLike`.
        usage: keep only the rows of this split: "Training", "PublicTest" or
            "PrivateTest"; None keeps every row. Defaults to `None`.
        errors: "raise" stops at a bad row with a `ValueError` naming its
            line; "skip" drops bad rows with one warning that counts them.
            Defaults to `"raise"`.

    Returns:
        A tuple ``(images, labels)``: uint8 images of shape (N, 48, 48, 1)
        and int64 labels of shape (N,) indexing `EMOTIONS`.

    Raises:
        ValueError: for an empty file, a missing column, an unknown `usage`
            or `errors` value, no row of the requested usage, or (with
            ``errors="raise"``) a bad row: wrong number of fields, wrong
            pixel count, a non-integer or out-of-range pixel, a label outside
            0-6 or an unknown Usage value. The message names the file, the
            line and the problem.
        FileNotFoundError: if `path` does not exist.

    Example:

    >>> x, y = load_fer2013("fer2013.csv", usage="Training")  # doctest: +SKIP
    >>> x.shape, y.shape  # doctest: +SKIP
    ((28709, 48, 48, 1), (28709,))
    """
    images, labels, _ = load_fer2013_usage(path, errors=errors, usage=usage)
    return images, labels


def load_fer2013_usage(
    path: str | os.PathLike[str],
    errors: Literal["raise", "skip"] = "raise",
    usage: Literal["Training", "PublicTest", "PrivateTest"] | None = None,
) -> tuple[np.ndarray, np.ndarray, np.ndarray | None]:
    """Like `load_fer2013`, also returning each row's Usage.

    Returns:
        ``(images, labels, usages)``; `usages` is a str array (N,), or None
        when the file has no Usage column.
    """
    if usage is not None and usage not in USAGES:
        raise ValueError(f"Expected `usage` to be one of {USAGES} or None. Received: {usage!r}")
    if errors not in ("raise", "skip"):
        raise ValueError(f"Expected `errors` to be 'raise' or 'skip'. Received: {errors!r}")
    name = os.fspath(path)
    with open(path, "rb") as f:
        raw = f.read()
    buf = np.frombuffer(raw, np.uint8)
    newlines, commas = _find(buf, _NEWLINE), _find(buf, _COMMA)

    # Lines: [start, end) without the newline; a final empty line is no line.
    starts = np.concatenate([[0], newlines + 1])
    ends = np.concatenate([newlines, [len(raw)]])
    if starts[-1] == len(raw):
        starts, ends = starts[:-1], ends[:-1]
    if len(starts):
        ends = ends - (buf[np.maximum(ends - 1, 0)] == ord("\r")) * (ends > starts)

    header = (
        raw[: ends[0]].lstrip(b"\xef\xbb\xbf").decode("utf-8", "replace") if len(starts) else ""
    )
    if not header.strip():
        raise ValueError(
            f"{name} is empty. Expected a FER2013 CSV file with the header "
            "'emotion,pixels,Usage' and one row per image."
        )
    columns = [c.strip().strip('"').lower() for c in header.split(",")]
    missing = [c for c in ("emotion", "pixels") if c not in columns]
    if missing:
        raise ValueError(
            f"{name}, line 1: missing column {', '.join(repr(m) for m in missing)}. "
            "Expected a header with 'emotion', 'pixels' and optionally 'Usage'. "
            f"Received: {header.strip()!r}"
        )
    has_usage = "usage" in columns
    if usage is not None and not has_usage:
        raise ValueError(
            f"{name} has no Usage column, so rows cannot be picked by usage={usage!r}. "
            f"Received columns: {header.strip()!r}. Pass usage=None to load every row."
        )

    # Data rows, without blank lines; line numbers are 1-based (header = 1).
    line_no = np.arange(2, len(starts) + 1)
    starts, ends = starts[1:], ends[1:]
    short = np.flatnonzero(ends - starts < 8)  # too short for a row: blank?
    blank = [i for i in short.tolist() if not raw[starts[i] : ends[i]].strip()]
    if blank:
        keep = np.ones(len(starts), bool)
        keep[blank] = False
        starts, ends, line_no = starts[keep], ends[keep], line_no[keep]
    if not len(starts):
        raise ValueError(f"{name} has a header but no data rows. Expected one row per image.")

    problems = _Problems(len(starts))
    n_commas = np.searchsorted(commas, ends) - np.searchsorted(commas, starts)
    for k in np.flatnonzero(n_commas != len(columns) - 1).tolist():
        problems.add(
            k, f"expected {len(columns)} comma-separated fields, received {n_commas[k] + 1}"
        )
    ok = np.flatnonzero(n_commas == len(columns) - 1)
    cuts = commas[np.searchsorted(commas, starts[ok])[:, None] + np.arange(len(columns) - 1)]
    left = np.column_stack([starts[ok], cuts + 1])
    right = np.column_stack([cuts, ends[ok]])

    def field(column: str) -> np.ndarray:
        j = columns.index(column)
        return np.array(
            [
                raw[a:b].strip(b' "')
                for a, b in zip(left[:, j].tolist(), right[:, j].tolist(), strict=True)
            ],
            dtype="S",
        )

    labels = field("emotion")
    is_label = (np.char.str_len(labels) == 1) & (labels >= b"0") & (labels <= b"6")
    for k in np.flatnonzero(~is_label).tolist():
        problems.add(ok[k], f"expected an emotion label 0-6, received {labels[k].decode()!r}")
    labels = np.where(is_label, labels, b"0").astype(np.int64)
    if has_usage:
        usages = field("usage")
        for k in np.flatnonzero(~np.isin(usages, np.array(USAGES, "S"))).tolist():
            problems.add(ok[k], f"unknown Usage {usages[k].decode()!r}, expected one of {USAGES}")

    j = columns.index("pixels")
    pixels = _parse_pixels(buf, left[:, j], right[:, j], problems, ok)

    if problems:
        first_row, first_problem = problems.first()
        where = f"{name}, line {line_no[first_row]}: {first_problem}"
        if errors == "raise":
            more = f" ({len(problems)} bad rows in all)" if len(problems) > 1 else ""
            raise ValueError(f"{where}{more}.")
        lines = ", ".join(str(line_no[k]) for k in problems.rows()[:5])
        warnings.warn(
            f"{name}: skipped {len(problems)} bad row(s) (line {lines}"
            f"{', ...' if len(problems) > 5 else ''}); the first: {where.split(', ', 1)[1]}.",
            UserWarning,
            stacklevel=3,
        )
    good = problems.good()[ok]
    if not good.any():
        raise ValueError(f"{name}: no valid rows; all {len(starts)} rows are bad.")
    x = pixels[good].reshape(-1, IMAGE_SIZE, IMAGE_SIZE, 1)
    y = labels[good]
    u = usages[good].astype(str) if has_usage else None
    if usage is not None and u is not None:  # u is None only without a Usage column
        pick = u == usage
        if not pick.any():
            raise ValueError(
                f"{name} has no row with Usage {usage!r}. "
                f"Received usages: {sorted(set(u.tolist()))}"
            )
        x, y, u = x[pick], y[pick], u[pick]
    return x, y, u


class _Problems:
    """The first problem found in each row."""

    def __init__(self, n: int) -> None:
        self._n = n
        self._by_row: dict[int, str] = {}

    def add(self, row: int, message: str) -> None:
        self._by_row.setdefault(int(row), message)

    def __len__(self) -> int:
        return len(self._by_row)

    def rows(self) -> list[int]:
        return sorted(self._by_row)

    def first(self) -> tuple[int, str]:
        row = min(self._by_row)
        return row, self._by_row[row]

    def good(self) -> np.ndarray:
        mask = np.ones(self._n, bool)
        mask[list(self._by_row)] = False
        return mask


def _find(buf: np.ndarray, byte: int) -> np.ndarray:
    """Positions of `byte` in `buf`, scanned in blocks through one reused mask."""
    mask = np.empty(min(_BLOCK, len(buf)), bool)
    found = []
    for offset in range(0, len(buf), _BLOCK):
        block = buf[offset : offset + _BLOCK]
        np.equal(block, byte, out=mask[: len(block)])
        found.append(np.flatnonzero(mask[: len(block)]) + offset)
    return np.concatenate(found) if found else np.zeros(0, np.int64)


def _parse_pixels(buf, left, right, problems: _Problems, rows) -> np.ndarray:
    """Parses the pixel fields ``buf[left[i]:right[i]]`` into (M, 2304) uint8.

    Rows with a problem are reported to `problems` (as ``rows[i]``) and hold
    zeros. Chunks of rows are parsed on a thread pool.
    """
    m = len(left)
    out = np.zeros((m, _PIXELS), np.uint8)
    chunks = [(lo, min(lo + _CHUNK_ROWS, m)) for lo in range(0, m, _CHUNK_ROWS)]
    if not chunks:
        return out
    capacity = max(int(right[hi - 1] - left[lo]) for lo, hi in chunks)
    local = threading.local()

    def work(chunk):
        if not hasattr(local, "scratch"):
            local.scratch = _Scratch(capacity)
        return _parse_chunk(
            buf,
            left[chunk[0] : chunk[1]],
            right[chunk[0] : chunk[1]],
            out[chunk[0] : chunk[1]],
            local.scratch,
        )

    workers = min(len(chunks), os.cpu_count() or 1, 4)
    if workers > 1:
        with ThreadPoolExecutor(workers) as pool:
            found = list(pool.map(work, chunks))
    else:
        found = [work(c) for c in chunks]
    for (lo, _), chunk_problems in zip(chunks, found, strict=True):
        for k, message in chunk_problems:
            problems.add(rows[lo + k], message)
    return out


class _Scratch:
    """Working buffers of one thread, reused from chunk to chunk."""

    def __init__(self, n: int):
        self.digit = np.empty(n, np.uint8)
        self.is_digit = np.empty(n, bool)
        self.mask = np.empty(n, bool)
        self.value = np.empty(n, np.uint16)
        self.term = np.empty(n, np.uint16)


def _parse_chunk(buf, left, right, out, scratch: _Scratch) -> list[tuple[int, str]]:
    """Parses one chunk of pixel fields into `out`; returns (row, problem) pairs."""
    a = int(left[0])
    text = buf[a : int(right[-1])]
    n = len(text)
    digit, is_digit = scratch.digit[:n], scratch.is_digit[:n]
    mask, value, term = scratch.mask[:n], scratch.value[:n], scratch.term[:n]

    np.bitwise_xor(text, ord("0"), out=digit)  # '0'..'9' -> 0..9
    np.less(digit, 10, out=is_digit)
    # Bytes between the pixel fields (labels, usages, newlines) are no pixels.
    gap_start, gap_len = right[:-1] - a, left[1:] - right[:-1]
    gaps = np.repeat(gap_start - np.cumsum(np.r_[0, gap_len[:-1]]), gap_len) + np.arange(
        gap_len.sum()
    )
    is_digit[gaps] = False

    # A pixel ends where a digit is followed by a non-digit.
    np.invert(is_digit[1:], out=mask[:-1])
    mask[-1] = True
    np.logical_and(mask, is_digit, out=mask)
    ends = np.flatnonzero(mask)
    # value[j] = the number whose last digit is at j (units, tens, hundreds).
    np.multiply(digit, is_digit, out=digit)
    np.copyto(value, digit)
    np.multiply(digit[:-1], 10, out=term[1:], dtype=np.uint16)
    value[1:] += term[1:]
    np.multiply(digit[:-2], is_digit[1:-1], out=term[2:], dtype=np.uint16)
    term[2:] *= 100
    value[2:] += term[2:]
    values = value[ends]
    first = np.searchsorted(ends, left - a)
    count = np.searchsorted(ends, right - a) - first

    found = {}
    # Anything but digits and separators inside a field: a non-integer pixel.
    np.not_equal(text, _SPACE, out=mask)
    np.logical_and(mask, ~is_digit, out=mask)
    mask[gaps] = False
    odd = np.flatnonzero(mask)
    odd = odd[~np.isin(text[odd], _SEPARATORS)]
    if len(odd):
        for k in np.unique(np.searchsorted(left - a, odd, side="right") - 1).tolist():
            tokens = bytes(buf[left[k] : right[k]]).replace(b'"', b" ").split()
            bad = next(t for t in tokens if not t.isdigit())
            found[k] = (
                f"expected integer pixels 0-255, received {bad.decode(errors='replace')[:20]!r}"
            )
    # Four digits in a row, or three above 255: out of range.
    np.logical_and(is_digit[3:], is_digit[2:-1], out=mask[3:])
    np.logical_and(mask[3:], is_digit[1:-2], out=mask[3:])
    np.logical_and(mask[3:], is_digit[:-3], out=mask[3:])
    mask[:3] = False
    big = np.flatnonzero(mask[ends] | (values > 255))
    if len(big):
        rows = np.searchsorted(first, big, side="right") - 1
        for k, t in zip(rows.tolist(), big.tolist(), strict=True):
            if k not in found:
                tokens = bytes(buf[left[k] : right[k]]).replace(b'"', b" ").split()
                found[k] = f"expected pixels 0-255, received {tokens[t - first[k]].decode()!r}"
    for k in np.flatnonzero(count != _PIXELS).tolist():
        found.setdefault(k, f"expected {_PIXELS} pixels (48x48), received {count[k]}")

    if not found:
        np.copyto(out, values.reshape(-1, _PIXELS), casting="unsafe")
    else:
        good = np.ones(len(left), bool)
        good[list(found)] = False
        index = first[good][:, None] + np.arange(_PIXELS)
        out[good] = values[index]
    return sorted(found.items())
