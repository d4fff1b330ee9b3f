"""The stream path's equal-work peer, in Python: used only by `make bench`.

Reads what the Rust bench wrote to DIR (the Kinesis event, the registry, the metric
catalog and the time policy), does what stream-ingest's handler does to it (decode,
the v1 contract's checks, catalog and units, the clock, the subject, the reading id,
in-batch dedup with conflicts, the lake's JSON lines packed into 5 KiB Firehose
records), writes its lines to DIR/peer.ndjson (the bench compares them byte for byte
with pulselake's) and prints its timings as JSON. Idiomatic, standard library only.
"""

import base64
import datetime
import hashlib
import json
import math
import struct
import sys
import time
from pathlib import Path

MAX_PAYLOAD_BYTES = 128 * 1024
MAX_ID_BYTES = 128
TARGET_RECORD_BYTES = 5 * 1024
ID_DOMAIN = b"pulselake.reading.v2"
EPOCH = datetime.datetime(1970, 1, 1, tzinfo=datetime.timezone.utc)
MS = datetime.timedelta(milliseconds=1)


def plain_id(s):
    if not isinstance(s, str) or not s or len(s.encode()) > MAX_ID_BYTES:
        return False
    return not any(ord(c) < 0x20 or 0x7F <= ord(c) <= 0x9F for c in s)


def parse_ms(text):
    return (datetime.datetime.fromisoformat(text) - EPOCH) // MS


def round_micro(v):
    x = v * 1e6
    return math.copysign(math.floor(abs(x) + 0.5), x) / 1e6


def reading_id(device, sensor, metric, at):
    h = hashlib.sha256(ID_DOMAIN)
    for part in (device, sensor, metric):
        b = part.encode()
        h.update(struct.pack(">I", len(b)))
        h.update(b)
    h.update(struct.pack(">q", at))
    return h.digest()[:16].hex()


def assignment_at(device, t):
    best = None
    for a in device["assignments"]:
        if a["valid_from"] <= t and (a.get("valid_to") is None or t < a["valid_to"]):
            if best is None or a["valid_from"] > best["valid_from"]:
                best = a
    return best


class Packer:
    def __init__(self):
        self.records, self.current = [], []
        self.size = 0

    def push(self, line):
        if self.current and self.size + len(line) > TARGET_RECORD_BYTES:
            self.records.append(b"".join(self.current))
            self.current, self.size = [], 0
        self.current.append(line)
        self.size += len(line)

    def finish(self):
        if self.current:
            self.records.append(b"".join(self.current))
        return self.records


def handle(records, registry, catalog, policy):
    """The handler on decoded records: Firehose records and quarantined (index, reason)."""
    packer, seen, quarantined = Packer(), {}, []
    for index, (rec, payload) in enumerate(records):
        received_at = math.floor(rec["kinesis"]["approximateArrivalTimestamp"] * 1000.0 + 0.5)
        if len(payload) > MAX_PAYLOAD_BYTES:
            quarantined.append((index, "payload_too_large"))
            continue
        try:
            msg = json.loads(payload)
        except ValueError:
            quarantined.append((index, "invalid_json"))
            continue
        if not isinstance(msg, dict) or msg.get("v") != 1 or not plain_id(msg.get("device_id")):
            quarantined.append((index, "wrong_shape"))
            continue
        device_id = msg["device_id"]
        if device_id != rec["kinesis"]["partitionKey"]:
            quarantined.append((index, "device_mismatch"))
            continue
        device = registry.get(device_id)
        if device is None:
            quarantined.append((index, "unknown_device"))
            continue
        shard = rec["eventID"].split(":", 1)[0]
        source_ref = f"{shard}:{rec['kinesis']['sequenceNumber']}"
        tail = None
        for r in msg.get("readings") or []:
            reason = None
            if not all(plain_id(r.get(k)) for k in ("sensor_id", "metric", "unit")):
                reason = "wrong_shape"
            elif (spec := catalog.get(r["metric"])) is None:
                reason = "unknown_metric"
            elif (conv := spec["accepted"].get(r["unit"])) is None:
                reason = "unknown_unit"
            else:
                value = r.get("value")
                at = parse_ms(r["measured_at"])
                numeric = isinstance(value, (int, float)) and not isinstance(value, bool)
                value = round_micro(float(value) * conv[0] + conv[1]) if numeric else None
                assignment = assignment_at(device, at)
                subject = assignment and assignment["subject_id"]
                if value is None or not math.isfinite(value):
                    reason = "non_finite_value"
                elif not spec["min"] <= value <= spec["max"]:
                    reason = "out_of_range"
                elif at > received_at + policy["max_future_skew_ms"]:
                    reason = "timestamp_in_future"
                elif at < policy["earliest_ms"] or at < received_at - policy["max_age_ms"]:
                    reason = "timestamp_too_old"
                elif subject is None:
                    reason = "device_unassigned"
            if reason:
                quarantined.append((index, reason))
                continue
            rid = reading_id(device_id, r["sensor_id"], r["metric"], at)
            kept = seen.get(rid)
            if kept is None:
                seen[rid] = value
            elif kept == value:
                continue  # the same reading again: absorbed
            else:
                quarantined.append((index, "conflicting_duplicate"))
                continue
            line = {
                "reading_id": rid,
                "sensor_id": r["sensor_id"],
                "value": value,
                "measured_at": at,
                "unit": spec["unit"],
                "loinc": spec["loinc"],
                "metric": r["metric"],
                "subject_id": subject,
                "device_id": device_id,
                "received_at": received_at,
                "source": "stream",
                "source_ref": source_ref,
                "cohort": assignment.get("cohort"),
            }
            packer.push(json.dumps(line, separators=(",", ":"), ensure_ascii=False).encode() + b"\n")
    return packer.finish(), quarantined


def decode(event_bytes):
    event = json.loads(event_bytes)
    return [(r, base64.b64decode(r["kinesis"]["data"])) for r in event["Records"]]


def main():
    d = Path(sys.argv[1])
    event_bytes = (d / "event.json").read_bytes()
    registry = {r["device_id"]: r for r in json.loads((d / "devices.json").read_bytes())}
    policy = json.loads((d / "policy.json").read_bytes())
    catalog = {
        m["name"]: dict(m, accepted={u: (s, o) for u, s, o in m["accepted"]})
        for m in policy["catalog"]
    }
    out, _ = handle(decode(event_bytes), registry, catalog, policy)
    (d / "peer.ndjson").write_bytes(b"".join(out))
    handler, invocation = [], []
    started = time.perf_counter()
    while len(handler) < 11 or time.perf_counter() - started < 3:
        t0 = time.perf_counter()
        records = decode(event_bytes)
        t1 = time.perf_counter()
        handle(records, registry, catalog, policy)
        t2 = time.perf_counter()
        handler.append(t2 - t1)
        invocation.append(t2 - t0)
    median = lambda xs: sorted(xs)[len(xs) // 2] * 1e3
    print(json.dumps({
        "python": sys.version.split()[0],
        "handler_ms": median(handler),
        "invocation_ms": median(invocation),
        "runs": len(handler),
    }))


if __name__ == "__main__":
    main()
