/** `arbor version` and `arbor config`: what is installed and what configuration is in force. */
import { z } from "zod";
import pkg from "../../package.json" with { type: "json" };
import { loadServeConfig } from "../../serve/config.ts";
import { defineCommand } from "../cli/command.ts";

/** `arbor version`. */
export const versionCommand = defineCommand({
  name: "version",
  summary: "print arbor's version and the runtimes it runs on",
  flags: [],
  schema: z.object({ _: z.array(z.string()) }),
  async run() {
    const info = {
      arbor: pkg.version,
      bun: typeof Bun === "undefined" ? null : Bun.version,
      node: process.versions.node,
      dependencies: pkg.dependencies,
    };
    return { json: info, text: `arbor ${info.arbor} (bun ${info.bun ?? "-"}, node ${info.node})` };
  },
});

/** `arbor config`. */
export const configCommand = defineCommand({
  name: "config",
  summary: "print the configuration in force (flags > environment > defaults), secrets hidden",
  flags: [],
  schema: z.object({ _: z.array(z.string()) }),
  async run(ctx) {
    const c = ctx.config;
    const shown = {
      home: c.home,
      store: c.store,
      database: c.databaseUrl
        ? c.databaseUrl.replace(/\/\/([^:@/]+):[^@]*@/, "//$1:***@")
        : "embedded PGlite",
      logLevel: c.logLevel,
      gcsEndpoint: c.gcsEndpoint ?? null,
      apiTokens: c.apiTokens.length,
      user: c.user,
    };
    // What `arbor serve` would run with (ARBOR_SERVE_*; checked the same way, so bad values show here).
    const { store: _, ...serve } = loadServeConfig(ctx.env, { store: c.store });
    const text = [
      ...Object.entries(shown).map(([k, v]) => `${k.padEnd(12)} ${String(v)}`),
      ...Object.entries(serve).map(([k, v]) => `serve.${k.padEnd(24)} ${String(v)}`),
    ].join("\n");
    return { json: { ...shown, serve }, text };
  },
});
