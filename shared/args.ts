/**
 * What `node:util` parseArgs throws, said for a person at a terminal: an unknown flag names the
 * closest known one, and a value that starts with '-' says how to give it.
 */

/** Edit distance between two short strings (flag names), a swap of neighbours counting as one edit. */
function distance(a: string, b: string): number {
  const d = Array.from({ length: a.length + 1 }, (_, i) =>
    Array.from({ length: b.length + 1 }, (_, j) => (i === 0 ? j : j === 0 ? i : 0)),
  );
  for (let i = 1; i <= a.length; i++) {
    for (let j = 1; j <= b.length; j++) {
      const cost = a[i - 1] === b[j - 1] ? 0 : 1;
      d[i][j] = Math.min(d[i - 1][j] + 1, d[i][j - 1] + 1, d[i - 1][j - 1] + cost);
      if (i > 1 && j > 1 && a[i - 1] === b[j - 2] && a[i - 2] === b[j - 1])
        d[i][j] = Math.min(d[i][j], d[i - 2][j - 2] + 1);
    }
  }
  return d[a.length][b.length];
}

/** One line about a parseArgs error; `known` are the flag names without dashes. */
export function argsErrorMessage(e: unknown, known: readonly string[]): string {
  const message = e instanceof Error ? e.message.split("\n")[0] : String(e);
  const unknown = /^Unknown option '(-{1,2})([^']+)'/.exec(message);
  if (unknown !== null) {
    const name = unknown[2].split("=")[0];
    const close = known
      .map((k) => ({ k, d: distance(name, k) }))
      .filter((c) => c.d <= (name.length <= 3 ? 1 : 2))
      .sort((x, y) => x.d - y.d)[0];
    return `unknown flag ${unknown[1]}${name}${close === undefined ? "" : `; did you mean --${close.k}?`}`;
  }
  const ambiguous = /^Option '(--[^' ]+)[^']*' argument is ambiguous/.exec(message);
  if (ambiguous !== null) {
    const flag = ambiguous[1];
    return `${flag} takes a value; to give one that starts with '-', write ${flag}=VALUE`;
  }
  return message;
}
