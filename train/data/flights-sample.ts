/**
 * The flights example data (3 million US flights of 2001, shipped by the `vega-datasets` npm
 * package) with the features the quickstart and the benchmarks use: month, day of month, day of
 * week, hour and minute from the departure date, distance, origin and destination (airport codes,
 * categorical), and the target `delayed` = departure delay > 15 minutes.
 */
import path from "node:path";
import pl from "nodejs-polars";

/** The Parquet file inside node_modules. */
export const FLIGHTS_FILE = path.join(
  import.meta.dir,
  "..",
  "..",
  "node_modules",
  "vega-datasets",
  "data",
  "flights-3m.parquet",
);

/** Feature columns of {@link flightsSample}, in order. */
export const FLIGHTS_FEATURES = [
  "month",
  "day_of_month",
  "day_of_week",
  "hour",
  "minute",
  "distance",
  "origin",
  "destination",
] as const;

/** `rows` flights sampled with `seed` (all rows when `rows` ≥ 3M): the features and `delayed` (boolean). */
export function flightsSample(rows: number, seed: number): pl.DataFrame {
  let frame = pl.readParquet(FLIGHTS_FILE);
  if (rows < frame.height) frame = frame.sample({ n: rows, seed });
  const date = pl.col("date");
  return frame.select(
    date.dt.month().cast(pl.Int32).alias("month"),
    date.dt.day().cast(pl.Int32).alias("day_of_month"),
    date.dt.weekday().cast(pl.Int32).alias("day_of_week"),
    date.dt.hour().cast(pl.Int32).alias("hour"),
    date.dt.minute().cast(pl.Int32).alias("minute"),
    pl.col("distance"),
    pl.col("origin"),
    pl.col("destination"),
    pl.col("delay").gt(15).alias("delayed"),
  );
}
