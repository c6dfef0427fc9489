/** Small pieces the serve benchmarks share: wrk Lua scripts and the machine's CPU counters. */
import { readFileSync } from "node:fs";

/** `bytes` as a Lua string literal (decimal escapes), for a wrk script's request body. */
export function luaString(bytes: Uint8Array): string {
  let s = "";
  for (const b of bytes) s += `\\${b}`;
  return `"${s}"`;
}

/**
 * /proc/stat's all-CPU counters: [steal, total] in ticks (steal: time the hypervisor gave other
 * guests; guest time is inside user already).
 */
export function machineTicks(): [number, number] {
  const f = readFileSync("/proc/stat", "utf8").split("\n")[0].trim().split(/\s+/).slice(1).map(Number);
  // user nice system idle iowait irq softirq steal
  return [f[7] ?? 0, f.slice(0, 8).reduce((a, b) => a + b, 0)];
}
