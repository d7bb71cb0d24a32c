import { formatTable } from "./table";

describe("formatTable", () => {
  test("pads columns to their widest cell, two spaces apart, without trailing spaces", () => {
    const lines = formatTable(
      ["SHARD", "ENDPOINT", "ERROR"],
      [
        ["a", "127.0.0.1:7400", ""],
        ["bb", "10.0.0.2:7400", "store down"],
      ],
    );
    expect(lines).toEqual([
      "SHARD  ENDPOINT        ERROR",
      "a      127.0.0.1:7400  -",
      "bb     10.0.0.2:7400   store down",
    ]);
  });

  test("right-aligns a column whose cells are all numbers, header included", () => {
    const lines = formatTable(
      ["COMMAND", "READY"],
      [
        ["X", 5],
        ["LONGER", 12345],
      ],
    );
    expect(lines).toEqual(["COMMAND  READY", "X            5", "LONGER   12345"]);
  });

  test("a numeric column with empty cells stays right-aligned; a mixed one is left-aligned", () => {
    const lines = formatTable(
      ["N", "MIXED"],
      [
        [1, "x"],
        [undefined, 22],
      ],
    );
    expect(lines).toEqual(["N  MIXED", "1  x", "-  22"]);
  });

  test("a footer goes under a rule", () => {
    const lines = formatTable(["COMMAND", "READY"], [["X", 3]], { footer: ["total", 3] });
    expect(lines).toEqual(["COMMAND  READY", "X            3", "-------  -----", "total        3"]);
  });

  test("booleans read yes/no, fractions one decimal, bigints as numbers, arrows one column wide", () => {
    const lines = formatTable(
      ["FROM → TO", "OK", "RATE", "BIG"],
      [["a → b", true, 2.25, 9007199254740993n]],
    );
    expect(lines).toEqual([
      "FROM → TO  OK   RATE               BIG",
      "a → b      yes   2.3  9007199254740993",
    ]);
  });

  test("no rows: the header alone", () => {
    expect(formatTable(["ID", "STATE"], [])).toEqual(["ID  STATE"]);
  });

  it("shows control characters in a cell as \uFFFD: a row stays one line, and no escape reaches the terminal", () => {
    const lines = formatTable(["ERROR"], [["a\nb\u001b[31mred\tx"]]);
    expect(lines).toEqual(["ERROR", "a\uFFFDb\uFFFD[31mred\uFFFDx"]);
  });
});
