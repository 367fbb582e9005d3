#!/usr/bin/env python3
"""The official Alibaba Cloud SDKs, unchanged, against `srctraffic-api serve`.

usage: test_sdks.py HOST:PORT
Three set-ups: the Tea SDK (alibabacloud-cdn20180510) with its default V3 signing, the Tea SDK
with signature_algorithm='v2' (V1), and the core SDK (aliyun-python-sdk-core + -cdn, V1), the
last both in JSON and in XML. The server holds (see sdk-test.sh): example.com 100 bytes at 20:00
and 200 at 20:01, b.example.com 5 at 20:01, other.org 7 at 20:00, all on 2019-12-10; key
`tenant` owns example.com and *.example.com."""
import sys
import time
import xml.etree.ElementTree as ET

from alibabacloud_cdn20180510 import models as cdn
from alibabacloud_cdn20180510.client import Client as TeaClient
from alibabacloud_tea_openapi import utils_models as openapi
from aliyunsdkcdn.request.v20180510.DescribeDomainRealTimeSrcTrafficDataRequest import (
    DescribeDomainRealTimeSrcTrafficDataRequest as CoreRequest,
)
from aliyunsdkcore.acs_exception.exceptions import ServerException
from aliyunsdkcore.client import AcsClient

ADDR = sys.argv[1]
KEY, SECRET = "tenant", "tenant-secret"
S, E = "2019-12-10T20:00:00Z", "2019-12-10T20:01:00Z"


class Failed(Exception):
    pass


def pace():
    # The server allows 10 calls per second per key.
    time.sleep(0.12)


def tea(v1, key=KEY, secret=SECRET):
    cfg = openapi.Config(access_key_id=key, access_key_secret=secret, endpoint=ADDR, protocol="HTTP",
                         signature_algorithm="v2" if v1 else None)
    client = TeaClient(cfg)

    def call(domain, start=None, end=None):
        pace()
        req = cdn.DescribeDomainRealTimeSrcTrafficDataRequest(domain_name=domain, start_time=start, end_time=end)
        try:
            r = client.describe_domain_real_time_src_traffic_data(req)
        except Exception as e:  # the Tea SDK raises its ClientException with .code
            return ("error", getattr(e, "code", repr(e)))
        points = r.body.real_time_src_traffic_data_per_interval.data_module
        return ("ok", [(p.time_stamp, p.value) for p in points])
    return call


def core(fmt, key=KEY, secret=SECRET):
    client = AcsClient(key, secret, "cn-hangzhou")

    def call(domain, start=None, end=None):
        pace()
        req = CoreRequest()
        req.set_DomainName(domain)
        if start:
            req.set_StartTime(start)
        if end:
            req.set_EndTime(end)
        req.set_endpoint(ADDR)
        req.set_protocol_type("http")
        if fmt == "JSON":
            try:
                import json
                body = json.loads(client.do_action_with_exception(req))
            except ServerException as e:
                return ("error", e.get_error_code())
            points = body["RealTimeSrcTrafficDataPerInterval"]["DataModule"]
            return ("ok", [(p["TimeStamp"], p["Value"]) for p in points])
        # XML: do_action keeps the requested format and returns the raw document.
        req.set_accept_format("XML")
        status, _headers, body = client.get_response(req)[:3]
        root = ET.fromstring(body)
        if status != 200:
            return ("error", root.findtext("Code"))
        return ("ok", [(m.findtext("TimeStamp"), m.findtext("Value")) for m in root.iter("DataModule")])
    return call


SETUPS = {
    "tea-v3": (lambda **kw: tea(False, **kw), "SignatureDoesNotMatch"),
    "tea-v1": (lambda **kw: tea(True, **kw), "SignatureDoesNotMatch"),
    # The core SDK turns SignatureDoesNotMatch into InvalidAccessKeySecret when the server's
    # string to sign (after the colon) equals its own: proof the two canonicalise alike.
    "core-v1-json": (lambda **kw: core("JSON", **kw), "InvalidAccessKeySecret"),
    "core-v1-xml": (lambda **kw: core("XML", **kw), "SignatureDoesNotMatch"),
}


def expect(got, want):
    if got != want:
        raise Failed(f"got {got!r}, want {want!r}")


def cases(make, wrong_secret_code):
    call = make()
    return [
        ("one domain", lambda: expect(call("example.com", S, E), ("ok", [(S, "100"), (E, "200")]))),
        ("several domains", lambda: expect(call("example.com,b.example.com", S, E), ("ok", [(S, "100"), (E, "205")]))),
        ("a wildcard-owned domain", lambda: expect(call("b.example.com", S, E), ("ok", [(S, "0"), (E, "5")]))),
        ("start time alone", lambda: expect(call("example.com", S, None), ("error", "MissingParameter"))),
        ("malformed start", lambda: expect(call("example.com", "2019-12-10 20:00:00", E), ("error", "InvalidStartTime.Malformed"))),
        ("malformed end", lambda: expect(call("example.com", S, "2019-12-10T20:01:00+08:00"), ("error", "InvalidEndTime.Malformed"))),
        ("end before start", lambda: expect(call("example.com", E, S), ("error", "InvalidEndTime.Mismatch"))),
        ("start too old", lambda: expect(call("example.com", "2019-01-01T00:00:00Z", "2019-01-02T00:00:00Z"),
                                          ("error", "InvalidStartTime.ValueNotSupported"))),
        ("foreign domain", lambda: expect(call("other.org", S, E), ("error", "InvalidDomain.NotFound"))),
        ("absent domain", lambda: expect(call("nosuch.org", S, E), ("error", "InvalidDomain.NotFound"))),
        ("wrong secret", lambda: expect(make(secret="not-the-secret")("example.com", S, E), ("error", wrong_secret_code))),
        ("unknown key", lambda: expect(make(key="nobody")("example.com", S, E), ("error", "InvalidAccessKeyId.NotFound"))),
    ]


def main():
    passed = failed = 0
    for name, (make, wrong_secret) in SETUPS.items():
        for case, run in cases(make, wrong_secret):
            try:
                run()
                passed += 1
                print(f"ok   {name}: {case}")
            except Exception as e:
                failed += 1
                print(f"FAIL {name}: {case}: {e}")
    print(f"sdk: {passed} passed, {failed} failed")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
