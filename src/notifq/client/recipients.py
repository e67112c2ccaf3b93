"""Recipients from a CSV file, in the shape POST /campaigns takes, remembering each one's line for error messages.

The API reports bad recipients by list index; an operator fixes a file by line number, so
every entry keeps the CSV line it came from.
"""

from __future__ import annotations

import csv
import io
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from notifq.client.api import UsageError

ADDRESS_COLUMN = "to"


@dataclass(frozen=True)
class Recipients:
    entries: list[Any]  # an address, or {"to": address, "vars": {column: value}}
    lines: list[int]  # the CSV line of entries[i]

    def line_of(self, index: Any) -> int | None:
        return self.lines[index] if isinstance(index, int) and 0 <= index < len(self.lines) else None


def read_stdin(encoding: str = "utf-8") -> str:
    """All of stdin as text, refused (exit 2) like an unreadable file when it is not UTF-8.

    The bytes are decoded here rather than by sys.stdin, whose decoding depends on the locale (strict, or
    surrogateescape in UTF-8 mode) and would either raise a bare UnicodeDecodeError or pass junk on. Newlines
    are translated as Path.read_text does, so stdin and a file give the same text.
    """
    if sys.stdin is None:  # started with stdin closed (`<&-`)
        raise UsageError("cannot read stdin: it is closed")
    try:
        text = sys.stdin.buffer.read().decode(encoding)
    except UnicodeDecodeError as exc:
        raise UsageError(f"cannot read stdin: not UTF-8 text ({exc})") from None
    except OSError as exc:
        raise UsageError(f"cannot read stdin: {exc}") from None
    return text.replace("\r\n", "\n").replace("\r", "\n")


def read_recipients(source: str) -> Recipients:
    """`source` is a path, or `-` for stdin."""
    if source == "-":
        text = read_stdin("utf-8-sig")
    else:
        try:
            # utf-8-sig: spreadsheet exports often start with a byte order mark, which would hide the `to` header.
            text = Path(source).read_text(encoding="utf-8-sig")
        except (OSError, UnicodeDecodeError) as exc:
            raise UsageError(f"cannot read {source}: {exc}") from None
    recipients = parse_csv(text.removeprefix("\ufeff"))
    if not recipients.entries:
        raise UsageError(f"{'stdin' if source == '-' else source} holds no recipients")
    return recipients


def parse_csv(text: str) -> Recipients:
    """A header row naming a `to` column makes the other named columns per-recipient vars; without one the
    first column is the address and the others are ignored. Blank lines are skipped."""
    reader = csv.reader(io.StringIO(text, newline=""), skipinitialspace=True)
    entries: list[Any] = []
    lines: list[int] = []
    columns: list[str] | None = None
    address_at = 0
    try:
        for row in reader:
            if not any(cell.strip() for cell in row):
                continue
            if columns is None and not entries:
                names = [cell.strip() for cell in row]
                if ADDRESS_COLUMN in (n.lower() for n in names):
                    columns = names
                    address_at = [n.lower() for n in names].index(ADDRESS_COLUMN)
                    continue
            entries.append(_entry(row, columns, address_at))
            lines.append(reader.line_num)
    except csv.Error as exc:
        raise UsageError(f"malformed CSV at line {reader.line_num}: {exc}") from None
    return Recipients(entries, lines)


def _entry(row: list[str], columns: list[str] | None, address_at: int) -> Any:
    address = row[address_at].strip() if address_at < len(row) else ""
    if columns is None:
        return address
    variables = {
        name: value for i, (name, value) in enumerate(zip(columns, row, strict=False)) if i != address_at and name
    }
    return {"to": address, "vars": variables} if variables else address
