/** A table cell: numbers are right-aligned, empty cells print as "-". */
export type Cell = string | number | bigint | boolean | undefined;

export interface TableOptions {
  /** A last row under a rule, such as a total. */
  readonly footer?: readonly Cell[];
}

const GAP = "  ";

/** Control characters: a newline would split a row, an escape sequence reach the terminal. */
const CONTROL = /\p{Cc}/gu;

function text(cell: Cell): string {
  if (cell === undefined || cell === "") return "-";
  if (typeof cell === "boolean") return cell ? "yes" : "no";
  if (typeof cell === "number" && !Number.isInteger(cell)) return cell.toFixed(1);
  // server text (a worker's last error, an audit summary) is shown, never obeyed
  return String(cell).replace(CONTROL, "\uFFFD");
}

const isNumber = (cell: Cell) => typeof cell === "number" || typeof cell === "bigint";

/** Display width: code points, so "→" counts as one column. */
const width = (s: string) => [...s].length;

/**
 * Lays rows out under headers: each column as wide as its widest cell, two
 * spaces apart, a column right-aligned when every non-empty cell in it is a
 * number, no trailing spaces. Returns the lines.
 */
export function formatTable(
  headers: readonly string[],
  rows: readonly (readonly Cell[])[],
  options: TableOptions = {},
): string[] {
  const body = options.footer ? [...rows, options.footer] : rows;
  const right = headers.map((_, c) => {
    const cells = body.map((r) => r[c]).filter((x) => x !== undefined && x !== "");
    return cells.length > 0 && cells.every(isNumber);
  });
  const cellText = (row: readonly Cell[]) => headers.map((_, c) => text(row[c]));
  const texts = body.map(cellText);
  const widths = headers.map((h, c) => Math.max(width(h), ...texts.map((t) => width(t[c]!))));
  const line = (cells: readonly string[]) =>
    cells
      .map((cell, c) => {
        const pad = " ".repeat(widths[c]! - width(cell));
        return right[c] ? pad + cell : cell + pad;
      })
      .join(GAP)
      .trimEnd();
  const lines = [line(headers), ...texts.slice(0, rows.length).map(line)];
  if (options.footer) {
    lines.push(widths.map((w) => "-".repeat(w)).join(GAP));
    lines.push(line(texts[rows.length]!));
  }
  return lines;
}
