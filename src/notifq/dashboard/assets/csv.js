// Recipients from pasted text or a CSV file, kept with their source line numbers so the
// API's errors ("recipient #3 is invalid") can be shown as "line 5".

/**
 * Parse CSV text (RFC 4180: quoted fields, "" inside quotes, CRLF or LF) into rows of cells.
 * The delimiter is a comma, or a semicolon when the first line has semicolons and no commas
 * (what spreadsheets write in locales that use the decimal comma).
 * Returns [{cells, line}] where `line` is the 1-based line the row starts on; blank rows are dropped.
 */
export function parseCsv(text) {
  const source = text.charCodeAt(0) === 0xfeff ? text.slice(1) : text;
  const firstLine = source.split(/\r\n|\n|\r/, 1)[0] || '';
  const delimiter = !firstLine.includes(',') && firstLine.includes(';') ? ';' : ',';
  const rows = [];
  let cells = [];
  let cell = '';
  let quoted = false;
  let line = 1;
  let rowLine = 1;
  const endRow = () => {
    cells.push(cell);
    if (cells.some((c) => c.trim() !== '')) rows.push({ cells, line: rowLine });
    cells = [];
    cell = '';
  };
  for (let i = 0; i < source.length; i += 1) {
    const ch = source[i];
    if (quoted) {
      if (ch === '"' && source[i + 1] === '"') {
        cell += '"';
        i += 1;
      } else if (ch === '"') quoted = false;
      else {
        if (ch === '\n' || (ch === '\r' && source[i + 1] !== '\n')) line += 1;
        cell += ch;
      }
    } else if (ch === '"' && cell.trim() === '') {
      quoted = true;
      cell = '';
    } else if (ch === delimiter) {
      cells.push(cell);
      cell = '';
    } else if (ch === '\r' || ch === '\n') {
      if (ch === '\r' && source[i + 1] === '\n') i += 1;
      endRow();
      line += 1;
      rowLine = line;
    } else cell += ch;
  }
  if (cell !== '' || cells.length) endRow();
  return rows;
}

/**
 * Recipients from CSV rows. With a header row holding a `to` column (any case), that column
 * is the address and every other named column becomes a template variable of the row:
 * `{"to": ..., "vars": {...}}`. Without such a header the first column is the address.
 * Returns {recipients, lines, columns, hasHeader}.
 */
export function recipientsFromCsv(text) {
  const rows = parseCsv(text);
  const header = rows[0]?.cells.map((c) => c.trim()) || [];
  const toIndex = header.findIndex((c) => c.toLowerCase() === 'to');
  const hasHeader = toIndex !== -1;
  const recipients = [];
  const lines = [];
  for (const { cells, line } of hasHeader ? rows.slice(1) : rows) {
    const address = (cells[hasHeader ? toIndex : 0] || '').trim();
    lines.push(line);
    if (!hasHeader) {
      recipients.push(address);
      continue;
    }
    // No prototype: on a plain object, a column named `__proto__` would set the prototype instead of
    // becoming a variable. JSON.stringify still sends it (an own enumerable property).
    const vars = Object.create(null);
    header.forEach((name, i) => {
      if (i !== toIndex && name !== '') vars[name] = cells[i] ?? '';
    });
    recipients.push(Object.keys(vars).length ? { to: address, vars } : address);
  }
  const columns = hasHeader ? header.filter((name, i) => i !== toIndex && name !== '') : [];
  return { recipients, lines, columns, hasHeader };
}

/** One recipient per line of pasted text (blank lines skipped, spaces trimmed). */
export function recipientsFromText(text) {
  const recipients = [];
  const lines = [];
  text.split(/\r\n|\n|\r/).forEach((raw, i) => {
    const value = raw.trim();
    if (value) {
      recipients.push(value);
      lines.push(i + 1);
    }
  });
  return { recipients, lines };
}
