#!/usr/bin/env python3
"""Checks that aggregate outputs agree: every (domain, UTC minute) -> bytes, zeros left out.

usage: compare.py TRUTH.csv OTHER.csv [OTHER.csv ...]
Reads srctraffic-batch export / gen-logs truth (domain,minute,bytes with minute as
2019-12-10T20:00:00Z) and the peers' CSV (domain,minute,sum_bytes with minute as
'2019-12-10 20:00:00' or with a +00 suffix). Exits 1 on the first disagreement."""
import csv
import sys


def norm_minute(m: str) -> str:
    m = m.strip().replace(" ", "T")
    for suffix in ("+00:00", "+00", "Z"):
        if m.endswith(suffix):
            m = m[: -len(suffix)]
    return m[:16]


def load(path: str) -> dict:
    out = {}
    with open(path, newline="") as f:
        for row in csv.reader(f):
            if not row or row[0] == "domain":
                continue
            b = int(row[2])
            if b:
                key = (row[0], norm_minute(row[1]))
                out[key] = out.get(key, 0) + b
    return out


def main() -> int:
    truth = load(sys.argv[1])
    ok = True
    for path in sys.argv[2:]:
        other = load(path)
        if other == truth:
            print(f"agree: {path} ({len(other)} cells)")
            continue
        ok = False
        missing = truth.keys() - other.keys()
        extra = other.keys() - truth.keys()
        wrong = [k for k in truth.keys() & other.keys() if truth[k] != other[k]]
        print(f"DISAGREE: {path}: {len(missing)} missing, {len(extra)} extra, {len(wrong)} different")
        for k in list(missing)[:3] + list(extra)[:3] + wrong[:3]:
            print(f"  {k}: truth {truth.get(k)} vs {other.get(k)}")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
