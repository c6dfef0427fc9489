import { describe, expect, test } from "bun:test";
import { ENV_NAMES } from "../shared/config.ts";
import { COMMANDS } from "../train/cli/commands.ts";
import { runArbor } from "./helpers/cli.ts";

function cli(argv: string[], env: Record<string, string | undefined> = {}) {
  return runArbor(argv, { env, cwd: "/tmp" });
}

describe("cli", () => {
  test("--help lists every command and its flags", async () => {
    const { code, stdout } = await cli(["--help"]);
    expect(code).toBe(0);
    for (const c of COMMANDS) {
      expect(stdout).toContain(`arbor ${c.name}`);
      for (const f of c.flags) expect(stdout).toContain(`--${f.name}`);
    }
    for (const name of Object.values(ENV_NAMES)) expect(stdout).toContain(name);
  });

  test("unknown command: non-zero exit and one line with a stable code", async () => {
    const { code, stderr } = await cli(["frobnicate"]);
    expect(code).toBe(2);
    expect(stderr.trim().split("\n")).toHaveLength(1);
    expect(stderr).toContain("UNKNOWN_COMMAND");
  });

  test("a command group without its subcommand: one line naming the subcommands; --help lists them", async () => {
    const bare = await cli(["models"]);
    expect(bare.code).toBe(2);
    expect(bare.stdout).toBe("");
    expect(bare.stderr.trim().split("\n")).toHaveLength(1);
    expect(bare.stderr).toContain("UNKNOWN_COMMAND");
    expect(bare.stderr).toContain("register, promote, rollback, archive, list, show");
    const json = await cli(["splits", "--json"]);
    expect(json.code).toBe(2);
    expect(JSON.parse(json.stdout).error.code).toBe("UNKNOWN_COMMAND");
    const help = await cli(["models", "--help"]);
    expect(help.code).toBe(0);
    expect(help.stdout).toContain("arbor models promote NAME VERSION --label LABEL");
  });

  test("unknown flag is refused with INVALID_ARGUMENT, as JSON with --json", async () => {
    const { code, stdout } = await cli(["version", "--bogus", "--json"]);
    expect(code).toBe(2);
    expect(JSON.parse(stdout).error.code).toBe("INVALID_ARGUMENT");
  });

  test("a mistyped flag names the closest one; a value starting with '-' says how to give it", async () => {
    const typo = await cli(["serve", "--prot", "8080"]);
    expect(typo.code).toBe(2);
    expect(typo.stderr).toContain("unknown flag --prot; did you mean --port?");
    expect((await cli(["serve", "--xyzzy"])).stderr).not.toContain("did you mean");
    const dash = await cli(["serve", "--workers", "-1"]);
    expect(dash.code).toBe(2);
    expect(dash.stderr).toContain("write --workers=VALUE");
  });

  test("config: flags override the environment; bad values are named", async () => {
    const ok = await cli(["config", "--json", "--store", "gs://b/p"], { ARBOR_STORE: "/x" });
    expect(JSON.parse(ok.stdout).store).toBe("gs://b/p");
    const bad = await cli(["config"], { DATABASE_URL: "mysql://x" });
    expect(bad.code).toBe(2);
    expect(bad.stderr).toContain("DATABASE_URL");
    // Commands without the registry neither read nor validate it (nor the API's tokens).
    const predict = await cli(
      ["predict", "--model", "/nonexistent", "--data", "/nonexistent.csv", "--out", "/tmp/x.csv"],
      { DATABASE_URL: "mysql://x", ARBOR_API_TOKENS: "short" },
    );
    expect(predict.code).toBe(2);
    expect(predict.stderr).toContain("BUNDLE_INVALID");
    // Another scheme is refused, not taken for a folder named "s3:".
    const s3 = await cli(["config", "--store", "s3://bucket/x"]);
    expect(s3.code).toBe(2);
    expect(s3.stderr).toContain("INVALID_CONFIG");
    // The message names where the value came from, and the value.
    expect(s3.stderr).toContain("--store (store)");
    expect(s3.stderr).toContain('"s3://bucket/x"');
    const s3env = await cli(["config"], { ARBOR_STORE: "s3://bucket/y" });
    expect(s3env.code).toBe(2);
    expect(s3env.stderr).toContain("ARBOR_STORE (store)");
    // The serve tier's settings are shown and checked too.
    const serve = JSON.parse((await cli(["config", "--json"], { ARBOR_SERVE_PORT: "9090" })).stdout).serve;
    expect({ port: serve.port, labels: serve.labels }).toEqual({ port: 9090, labels: ["production"] });
    const badServe = await cli(["config"], { ARBOR_SERVE_WORKERS: "abc" });
    expect(badServe.code).toBe(2);
    expect(badServe.stderr).toContain("ARBOR_SERVE_WORKERS (workers)");
    expect(badServe.stderr).toContain('"abc"');
    expect(JSON.parse((await cli(["config", "--json", "--store", "rel/dir"])).stdout).store).toBe(
      "file:///tmp/rel/dir",
    );
  });

  test("config: the audit trail's user is ARBOR_USER, then USER, then the OS account (never unknown)", async () => {
    const user = async (env: Record<string, string>) =>
      JSON.parse((await cli(["config", "--json"], env)).stdout).user;
    expect(await user({ ARBOR_USER: "bob", USER: "alice" })).toBe("bob");
    expect(await user({ USER: "alice" })).toBe("alice");
    const os = await user({});
    expect(typeof os).toBe("string");
    expect(os).not.toBe("unknown");
  });
});
