/** Text mutations for the fast-path fuzz tests (serve-json-rows, serve-v2-json). */

/** Flip, drop, insert or duplicate a few characters of a JSON text, with characters JSON is made of. */
export function mutateText(text: string, r: () => number): string {
  let s = text;
  const edits = 1 + Math.floor(r() * 3);
  for (let e = 0; e < edits; e++) {
    const at = Math.floor(r() * (s.length + 1));
    const k = r();
    const ch = ' ,:[]{}"-.0123456789eE+nul\\'[Math.floor(r() * 27)];
    if (k < 0.35) s = s.slice(0, at) + ch + s.slice(at + 1);
    else if (k < 0.65) s = s.slice(0, at) + s.slice(at + 1);
    else if (k < 0.9) s = s.slice(0, at) + ch + s.slice(at);
    else s = s.slice(0, at) + s.slice(at, at + 8) + s.slice(at);
  }
  return s;
}
