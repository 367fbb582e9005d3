"""Writes signed requests for wrk (bench/signed.lua) and the credentials file they are signed for.

Each request is the benchmark's query, V1-signed (HMAC-SHA1, as the official SDKs sign it) with
a fresh nonce and the current time, by one of KEYS access keys in turn, so that no key comes
near the 10 calls per second limit at the rates measured. One file per wrk thread: wrk runs
each thread's Lua on its own, and a nonce must be sent once.

    python3 bench/signed_requests.py OUT_PREFIX THREADS PER_THREAD DOMAIN [KEYS]
writes OUT_PREFIX.creds.json and OUT_PREFIX.1 ... OUT_PREFIX.THREADS (one path per line).
"""
import base64
import datetime
import hashlib
import hmac
import json
import sys
import urllib.parse


def pct(s: str) -> str:
    return urllib.parse.quote(s, safe="-_.~")


def signed_path(params: dict, secret: str) -> str:
    canonical = "&".join(f"{pct(k)}={pct(v)}" for k, v in sorted(params.items()))
    to_sign = f"GET&%2F&{pct(canonical)}"
    digest = hmac.new(f"{secret}&".encode(), to_sign.encode(), hashlib.sha1).digest()
    return "/?" + canonical + "&Signature=" + pct(base64.b64encode(digest).decode())


def main() -> None:
    prefix, threads, per_thread, domain = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), sys.argv[4]
    keys = int(sys.argv[5]) if len(sys.argv) > 5 else 2000
    creds = {"keys": [
        {"access_key_id": f"bench{k}", "access_key_secret": f"secret{k}", "domains": ["*"]}
        for k in range(keys)
    ]}
    with open(f"{prefix}.creds.json", "w") as f:
        json.dump(creds, f)
    stamp = datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")
    n = 0
    for t in range(1, threads + 1):
        with open(f"{prefix}.{t}", "w") as f:
            for _ in range(per_thread):
                k = n % keys
                params = {
                    "Action": "DescribeDomainRealTimeSrcTrafficData",
                    "Version": "2018-05-10",
                    "DomainName": domain,
                    "StartTime": "2019-12-10T00:00:00Z",
                    "EndTime": "2019-12-11T00:00:00Z",
                    "Format": "JSON",
                    "AccessKeyId": f"bench{k}",
                    "SignatureMethod": "HMAC-SHA1",
                    "SignatureVersion": "1.0",
                    "SignatureNonce": f"bench-{stamp}-{n}",
                    "Timestamp": stamp,
                }
                f.write(signed_path(params, f"secret{k}") + "\n")
                n += 1


main()
