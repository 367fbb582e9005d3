#!/usr/bin/env python3
"""Every action of the back-to-origin family through the official SDKs, against ground truth.

usage: test_family.py HOST:PORT TRUTH.measures.csv
The store holds sdk-test.sh's four hand-written lines (no scheme, no status) and a day of
`gen-logs --scheme-column` CSV, whose per-minute truth (bytes, https bytes, requests, counts
per status) is TRUTH. Key `tenant` owns example.com and *.example.com (every generated domain),
not other.org. Each action is asked through the Tea SDK (V3 signing, JSON) and the core SDK (V1
signing, XML), at every interval it offers the SDK a way to ask for; the answers must equal the
truth summed here, slot by slot, and formatted as SPEC.md section 8 says."""
import calendar
import csv
import re
import sys
import time
import xml.etree.ElementTree as ET
from collections import defaultdict

from alibabacloud_cdn20180510 import models as cdn
from alibabacloud_cdn20180510.client import Client as TeaClient
from alibabacloud_tea_openapi import utils_models as openapi
from aliyunsdkcore.client import AcsClient
import importlib

ADDR, TRUTH = sys.argv[1], sys.argv[2]
KEY, SECRET = "tenant", "tenant-secret"

# name: (real-time, measure, https, data element, item, code item)
ACTIONS = {
    "DescribeDomainRealTimeSrcTrafficData": (True, "bytes", False, "RealTimeSrcTrafficDataPerInterval", "DataModule", None),
    "DescribeDomainRealTimeSrcBpsData": (True, "bits", False, "RealTimeSrcBpsDataPerInterval", "DataModule", None),
    "DescribeDomainSrcTrafficData": (False, "bytes", True, "SrcTrafficDataPerInterval", "DataModule", None),
    "DescribeDomainSrcBpsData": (False, "bits", True, "SrcBpsDataPerInterval", "DataModule", None),
    "DescribeDomainSrcQpsData": (False, "requests", False, "SrcQpsDataPerInterval", "DataModule", None),
    "DescribeDomainRealTimeSrcHttpCodeData": (True, "codes", False, "RealTimeSrcHttpCodeData", "UsageData",
                                              "RealTimeSrcCodeProportionData"),
    "DescribeDomainSrcHttpCodeData": (False, "codes", False, "HttpCodeData", "UsageData", "CodeProportionData"),
}


class Failed(Exception):
    pass


def minute(ts):
    return calendar.timegm(time.strptime(ts, "%Y-%m-%dT%H:%M:%SZ")) // 60


def stamp(m):
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(m * 60))


def load_truth():
    """(domain, minute) -> [bytes, https, requests, {code: count}]"""
    t = defaultdict(lambda: [0, 0, 0, defaultdict(int)])
    with open(TRUTH) as f:
        for row in csv.DictReader(f):
            c = t[(row["domain"], minute(row["minute"]))]
            c[0] += int(row["bytes"])
            c[1] += int(row["https"])
            c[2] += int(row["requests"])
            for pair in row["statuses"].split():
                code, n = pair.split(":")
                c[3][int(code)] += int(n)
    # sdk-test.sh's hand-written lines: a request each, no scheme, no status.
    for domain, ts, b in [("example.com", "2019-12-10T20:00:00Z", 100), ("example.com", "2019-12-10T20:01:00Z", 200),
                          ("b.example.com", "2019-12-10T20:01:00Z", 5), ("other.org", "2019-12-10T20:00:00Z", 7)]:
        c = t[(domain, minute(ts))]
        c[0] += b
        c[2] += 1
    return t


TRUTH_CELLS = load_truth()
WATERMARK = max(m for (_, m) in TRUTH_CELLS)
GENERATED = sorted({d for (d, _) in TRUTH_CELLS if d.endswith(".example.com") and d != "b.example.com"})


def rate(x):
    s = f"{x:.2f}"
    return s.rstrip("0").rstrip(".") if "." in s else s


def expected(action, domains, start, end, interval):
    real_time, measure, https, _data, _item, code_item = ACTIONS[action]
    step = interval // 60
    first = minute(start) - minute(start) % step
    last = min(minute(end) - minute(end) % step, WATERMARK - WATERMARK % step)
    out = []
    for slot in range(first, last + 1, step):
        b = h = r = 0
        codes = defaultdict(int)
        for d in domains:
            for m in range(slot, slot + step):
                c = TRUTH_CELLS.get((d, m))
                if c:
                    b, h, r = b + c[0], h + c[1], r + c[2]
                    for code, n in c[3].items():
                        codes[code] += n
        item = {"TimeStamp": stamp(slot)}
        if measure == "bytes":
            item["Value"] = str(b)
            if https:
                item["HttpsValue"] = str(h)
        elif measure == "bits":
            item["Value"] = rate(b * 8 / interval)
            if https:
                item["HttpsValue"] = rate(h * 8 / interval)
        elif measure == "requests":
            item["Value"] = rate(r / interval)
        else:
            item["Value"] = {code_item: [
                {"Code": str(code), "Proportion": rate(n * 100 / r), "Count": str(n)}
                for code, n in sorted(codes.items())] if r else []}
        out.append(item)
    return out


def snake(name):
    return re.sub(r"(?<!^)(?=[A-Z])", "_", name).lower()


def pace():
    # The server allows 10 calls per second per key.
    time.sleep(0.12)


def tea(action, domains, start, end, interval):
    """The Tea SDK, V3: real-time requests have no Interval field (the span picks it)."""
    pace()
    cfg = openapi.Config(access_key_id=KEY, access_key_secret=SECRET, endpoint=ADDR, protocol="HTTP")
    client = TeaClient(cfg)
    kw = {"domain_name": domains, "start_time": start, "end_time": end}
    if interval and not ACTIONS[action][0]:
        kw["interval"] = str(interval)
    req = getattr(cdn, action + "Request")(**kw)
    body = getattr(client, snake(action))(req).body.to_map()
    return body


def core_xml(action, domains, start, end, interval):
    """The core SDK, V1, XML: the document read back into the JSON shape."""
    pace()
    client = AcsClient(KEY, SECRET, "cn-hangzhou")
    mod = importlib.import_module(f"aliyunsdkcdn.request.v20180510.{action}Request")
    req = getattr(mod, action + "Request")()
    if domains is not None:
        req.add_query_param("DomainName", domains)
    req.add_query_param("StartTime", start)
    req.add_query_param("EndTime", end)
    if interval:
        req.add_query_param("Interval", str(interval))
    req.set_endpoint(ADDR)
    req.set_protocol_type("http")
    req.set_accept_format("XML")
    status, _headers, raw = client.get_response(req)[:3]
    root = ET.fromstring(raw)
    if status != 200:
        raise Failed(f"{status} {root.findtext('Code')}: {root.findtext('Message')}")
    if root.tag != action + "Response":
        raise Failed(f"root {root.tag}")
    _rt, _m, _h, data, item, code_item = ACTIONS[action]

    def value(el):
        if code_item and el.tag == "Value":
            return {code_item: [{c.tag: c.text for c in entry} for entry in el.findall(code_item)]}
        return el.text or ""

    items = [{f.tag: value(f) for f in el} for el in root.find(data).findall(item)]
    return {"DomainName": root.findtext("DomainName") or "", "DataInterval": root.findtext("DataInterval"),
            data: {item: items}}


def check(got, action, domains, start, end, interval):
    _rt, _m, _h, data, item, _c = ACTIONS[action]
    want = expected(action, domains, start, end, interval)
    have = got[data][item]
    if have != want:
        for i, (a, b) in enumerate(zip(have, want)):
            if a != b:
                raise Failed(f"slot {i}: got {a}, want {b} ({len(have)} vs {len(want)} slots)")
        raise Failed(f"{len(have)} slots, want {len(want)}")
    if got["DataInterval"] != str(interval):
        raise Failed(f"DataInterval {got['DataInterval']}, want {interval}")


def main():
    day, wide = ("2019-12-10T00:00:00Z", "2019-12-10T23:59:00Z"), ("2019-12-09T18:00:00Z", "2019-12-10T23:59:00Z")
    one, three = GENERATED[:1], GENERATED[:3]
    cases = []
    for action, (real_time, *_rest) in ACTIONS.items():
        for domains in (one, three):
            joined = ",".join(domains)
            if real_time:
                # The span picks 60 s (up to 24 h) and 300 s (up to 7 days) for the Tea SDK.
                cases.append(("tea-v3", tea, action, domains, joined, day, None, 60))
                cases.append(("tea-v3", tea, action, domains, joined, wide, None, 300))
                for iv in (60, 300, 3600, 86400):
                    cases.append(("core-v1-xml", core_xml, action, domains, joined, wide, iv, iv))
            else:
                for iv in (300, 3600, 86400):
                    cases.append(("tea-v3", tea, action, domains, joined, wide, iv, iv))
                    cases.append(("core-v1-xml", core_xml, action, domains, joined, wide, iv, iv))
        if not real_time:
            # No DomainName: every domain the key may read (not other.org).
            mine = GENERATED + ["example.com", "b.example.com"]
            cases.append(("core-v1-xml", core_xml, action, mine, None, wide, 3600, 3600))
    passed = failed = 0
    for setup, call, action, domains, joined, (start, end), asked, interval in cases:
        name = f"{setup}: {action} {len(domains)} domain(s) {interval}s{'' if joined is not None else ' (no DomainName)'}"
        try:
            got = call(action, joined, start, end, asked)
            check(got, action, domains, start, end, interval)
            if joined is None and got["DomainName"] != "":
                raise Failed(f"DomainName {got['DomainName']!r}")
            passed += 1
            print(f"ok   {name}")
        except Exception as e:
            failed += 1
            print(f"FAIL {name}: {e}")
    print(f"sdk family: {passed} passed, {failed} failed")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
