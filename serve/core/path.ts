/**
 * Request paths as routing sees them. uWS hands over the path as sent; clients that escape a path
 * segment send `flights%3Apredict` for `flights:predict`. Each segment is percent-decoded on its
 * own; a segment that holds an encoded slash, or malformed escapes, is left as sent, so it cannot
 * add a path level and the route or name check refuses it.
 */
export function decodePath(raw: string): string {
  if (!raw.includes("%")) return raw;
  const segs = raw.split("/");
  for (let i = 0; i < segs.length; i++) {
    const seg = segs[i];
    if (!seg.includes("%")) continue;
    try {
      const decoded = decodeURIComponent(seg);
      if (!decoded.includes("/")) segs[i] = decoded;
    } catch {
      // Not valid percent-encoding: keep the segment as sent.
    }
  }
  return segs.join("/");
}
