/**
 * drizzle-kit configuration: `npx drizzle-kit generate --config registry/drizzle.config.ts` writes
 * the SQL migrations for registry/db/schema.ts into registry/migrations/ (committed).
 */
import { defineConfig } from "drizzle-kit";

export default defineConfig({
  dialect: "postgresql",
  schema: "./registry/db/schema.ts",
  out: "./registry/migrations",
});
