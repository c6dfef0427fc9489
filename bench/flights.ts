/**
 * The flights benchmark table, shared by bench/train.ts and bench/serve.ts: vega-datasets
 * flights-3m.parquet, `rows` sampled with seed 1 (in date order), features month, day of month, day
 * of week, hour, minute, distance (float32), origin and destination (strings), and the target
 * `late` (delay > 15 minutes).
 */
import path from "node:path";
import pl from "nodejs-polars";

const PARQUET = path.join(import.meta.dir, "..", "node_modules/vega-datasets/data/flights-3m.parquet");

export function flightsFrame(rows: number): pl.DataFrame {
  let frame = pl.readParquet(PARQUET);
  if (rows < frame.height) frame = frame.sample({ n: rows, seed: 1 });
  const date = pl.col("date");
  return frame.select(
    date.dt.month().cast(pl.Float32).alias("month"),
    date.dt.day().cast(pl.Float32).alias("day"),
    date.dt.weekday().cast(pl.Float32).alias("weekday"),
    date.dt.hour().cast(pl.Float32).alias("hour"),
    date.dt.minute().cast(pl.Float32).alias("minute"),
    pl.col("distance").cast(pl.Float32),
    pl.col("origin"),
    pl.col("destination"),
    pl.col("delay").gt(15).alias("late"),
  );
}
