// Entry of the explain thread under Node.js: a worker does not inherit the parent's `--import tsx`
// loader, so load the TypeScript module through tsx's API (Bun runs the .ts file directly).
import { tsImport } from "tsx/esm/api";

await tsImport("./explain-worker.ts", import.meta.url);
