"""The file path's equal-work peer, in Python with pyarrow: used only by `make bench`.

Takes the bench's CSV and what the Rust bench wrote to DIR (registry, catalog, policy,
the file spec) and does what file-ingest does to it on one thread: the content's
SHA-256, the CSV read, the id checks, catalog and units, the clock and retention, the
subject, the reading id, repeated readings, partitions by metric and day, each sorted by
subject then time, written as Parquet under the lake's settings. Then, untimed, it reads
pulselake's chunks (DIR/rust-*.parquet) and its own and compares them row for row.
Prints its timing and the comparison as JSON.
"""

import hashlib
import json
import struct
import sys
import time
from pathlib import Path

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pacsv
import pyarrow.parquet as pq

ID_DOMAIN = b"pulselake.reading.v2"
COLUMNS = ["reading_id", "subject_id", "device_id", "sensor_id", "value", "unit", "loinc",
           "measured_at", "received_at", "source", "source_ref", "cohort"]
CONTROL = r"[\x00-\x1f\x7f-\x9f]"


def reading_ids(devices, sensors, metrics, ats):
    """The reading ids; the hashed prefix of each (device, sensor, metric) is built once."""
    out, prefixes = [], {}
    pack_len, pack_at, sha = struct.Struct(">I").pack, struct.Struct(">q").pack, hashlib.sha256
    for d, s, m, t in zip(devices, sensors, metrics, ats):
        prefix = prefixes.get((d, s, m))
        if prefix is None:
            parts = [ID_DOMAIN]
            for part in (d, s, m):
                b = part.encode()
                parts += (pack_len(len(b)), b)
            prefix = prefixes[(d, s, m)] = b"".join(parts)
        out.append(sha(prefix + pack_at(t)).digest()[:16].hex())
    return out


def ingest(csv_path, out_dir, spec, registry, catalog):
    raw = Path(csv_path).read_bytes()
    content_hash = hashlib.sha256(raw).hexdigest()
    t = pacsv.read_csv(
        pa.BufferReader(raw),
        read_options=pacsv.ReadOptions(use_threads=False, block_size=8 << 20),
        convert_options=pacsv.ConvertOptions(column_types={
            "device_id": pa.string(), "sensor_id": pa.string(), "metric": pa.string(),
            "value": pa.float64(), "unit": pa.string(), "measured_at": pa.string()}),
    )
    t = t.append_column("line", pa.array(range(2, t.num_rows + 2), pa.int64()))
    # Every check is a mask over the whole table; the rows are filtered once, at the end.
    ok = None
    for name in ("device_id", "sensor_id", "metric", "unit"):
        col = t[name]
        good = pc.and_(pc.and_(pc.greater(pc.binary_length(col), 0),
                               pc.less_equal(pc.binary_length(col), 128)),
                       pc.invert(pc.match_substring_regex(col, CONTROL)))
        ok = good if ok is None else pc.and_(ok, good)
    # Catalog and units: a lookup of (metric, unit) among the accepted pairs.
    at_pair = pc.index_in(pc.binary_join_element_wise(t["metric"], t["unit"], "\x00"),
                          value_set=catalog["key"])
    conv = catalog.take(at_pair)
    value = pc.divide(pc.round(pc.multiply(pc.add(pc.multiply(t["value"], conv["scale"]), conv["offset"]), 1e6),
                              round_mode="half_towards_infinity"), 1e6)
    at = pc.cast(pc.cast(t["measured_at"], pa.timestamp("ms", "UTC")), pa.int64())
    # The subject: the device's assignment (one per device in the bench's registry).
    assignment = registry.take(pc.index_in(t["device_id"], value_set=registry["device_id"]))
    keep = pc.and_kleene(ok, pc.and_kleene(
        pc.and_kleene(pc.greater_equal(value, conv["min"]), pc.less_equal(value, conv["max"])),
        pc.and_kleene(pc.less_equal(at, spec["received_at"] + spec["max_future_skew_ms"]),
                      pc.greater_equal(at, max(spec["earliest_ms"], spec["retention_cutoff_ms"])))))
    covered = pc.and_kleene(pc.less_equal(assignment["valid_from"], at),
                            pc.or_kleene(pc.is_null(assignment["valid_to"]), pc.less(at, assignment["valid_to"])))
    keep = pc.fill_null(pc.and_kleene(keep, covered), False)
    t = pa.table({
        "subject_id": assignment["subject_id"], "cohort": assignment["cohort"],
        "device_id": t["device_id"], "sensor_id": t["sensor_id"],
        "value": value, "unit": conv["canonical_unit"], "loinc": conv["loinc"], "measured_at": at,
        "metric": t["metric"], "line": t["line"],
    }).filter(keep)
    ids = reading_ids(t["device_id"].to_pylist(), t["sensor_id"].to_pylist(),
                      t["metric"].to_pylist(), t["measured_at"].to_pylist())
    t = t.append_column("reading_id", pa.array(ids, pa.string()))
    # Repeated readings: one row per id (the file has none; when some are, the first line
    # of each is kept).
    if len(pc.unique(t["reading_id"])) != t.num_rows:
        first = t.group_by("reading_id").aggregate([("line", "min")])
        t = t.join(first.rename_columns(["reading_id", "line"]), keys=["reading_id", "line"])
    n = t.num_rows
    t = t.append_column("day", pc.divide(t["measured_at"], 86_400_000))
    t = t.append_column("received_at", pa.repeat(pa.scalar(spec["received_at"], pa.int64()), n))
    t = t.append_column("source", pa.repeat(pa.scalar("file"), n))
    t = t.append_column("source_ref", pc.binary_join_element_wise(
        pa.scalar(f"file:{spec['source_hash']}"), pc.cast(t["line"], pa.string()), ":L"))
    # Partitions by metric and day, each sorted by subject then time: one sort, then slices.
    t = t.sort_by([("metric", "ascending"), ("day", "ascending"), ("subject_id", "ascending"),
                   ("measured_at", "ascending"), ("device_id", "ascending"),
                   ("sensor_id", "ascending"), ("line", "ascending")])
    bounds = pc.run_end_encode(pc.binary_join_element_wise(
        t["metric"], pc.cast(t["day"], pa.string()), "/")).combine_chunks().run_ends.to_pylist()
    written, start = 0, 0
    for end in bounds:
        rows = t.slice(start, end - start)
        name = f"peer-{rows['metric'][0]}-{rows['day'][0]}.parquet"
        rows = rows.select(COLUMNS).cast(lake_schema())
        pq.write_table(rows, out_dir / name,
                       row_group_size=64 * 1024,
                       compression={c: ("NONE" if c == "reading_id" else "SNAPPY") for c in COLUMNS},
                       use_dictionary=[c for c in COLUMNS if c not in ("reading_id", "source_ref")],
                       write_statistics=[c for c in COLUMNS if c not in ("reading_id", "source_ref")])
        written += rows.num_rows
        start = end
    return written, content_hash


def lake_schema():
    ts = pa.timestamp("ms", "UTC")
    types = {"value": pa.float64(), "measured_at": ts, "received_at": ts}
    return pa.schema([(c, types.get(c, pa.string())) for c in COLUMNS])


def same_rows(d):
    def load(pattern):
        return pa.concat_tables([pq.read_table(p).cast(lake_schema()) for p in sorted(d.glob(pattern))]) \
            .sort_by("reading_id")
    ours, theirs = load("peer-*.parquet"), load("rust-*.parquet")
    return ours.num_rows == theirs.num_rows and ours.equals(theirs), theirs.num_rows


def tables(spec):
    """The registry and the catalog as Arrow tables, for lookups by index."""
    reg = spec["registry"]
    assert all(len(r["assignments"]) == 1 for r in reg), "the peer reads one assignment per device"
    registry = pa.table({
        "device_id": [r["device_id"] for r in reg for _ in r["assignments"]],
        "subject_id": [a["subject_id"] for r in reg for a in r["assignments"]],
        "valid_from": pa.array([a["valid_from"] for r in reg for a in r["assignments"]], pa.int64()),
        "valid_to": pa.array([a.get("valid_to") for r in reg for a in r["assignments"]], pa.int64()),
        "cohort": pa.array([a.get("cohort") for r in reg for a in r["assignments"]], pa.string()),
    })
    rows = [(m["name"], u, s, o, m["unit"], m["loinc"], m["min"], m["max"])
            for m in spec["catalog"] for u, s, o in m["accepted"]]
    names = ["metric", "unit_in", "scale", "offset", "canonical_unit", "loinc", "min", "max"]
    catalog = pa.table({n: [r[i] for r in rows] for i, n in enumerate(names)})
    catalog = catalog.append_column(
        "key", pc.binary_join_element_wise(catalog["metric"], catalog["unit_in"], "\x00"))
    return registry, catalog


def main():
    pa.set_cpu_count(1)
    pa.set_io_thread_count(1)
    d = Path(sys.argv[1])
    csv_path = sys.argv[2]
    spec = json.loads((d / "spec.json").read_bytes())
    registry, catalog = tables(spec)
    times = []
    for _ in range(3):
        for p in d.glob("peer-*.parquet"):
            p.unlink()
        started = time.perf_counter()
        written, _ = ingest(csv_path, d, spec, registry, catalog)
        times.append(time.perf_counter() - started)
    equal, rust_rows = same_rows(d)
    print(json.dumps({"python": sys.version.split()[0], "pyarrow": pa.__version__,
                      "seconds": sorted(times)[1], "rows": written, "rust_rows": rust_rows,
                      "equal": equal}))


if __name__ == "__main__":
    main()
