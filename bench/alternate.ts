/**
 * An A/B timing in one process: `old` and `now` run `n` times each, alternated round by round so
 * that a busy machine slows both alike; the median ns per call of each.
 */
export function alternate(
  rounds: number,
  n: number,
  old: () => unknown,
  now: () => unknown,
): { old: number; now: number } {
  const times = { old: [] as number[], now: [] as number[] };
  for (let round = 0; round < rounds; round++) {
    for (const [key, fn] of [
      ["old", old],
      ["now", now],
    ] as const) {
      const start = process.hrtime.bigint();
      for (let i = 0; i < n; i++) fn();
      times[key].push(Number(process.hrtime.bigint() - start) / n);
    }
  }
  const median = (a: number[]) => [...a].sort((x, y) => x - y)[a.length >> 1];
  return { old: median(times.old), now: median(times.now) };
}
