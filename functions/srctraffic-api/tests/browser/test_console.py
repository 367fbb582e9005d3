#!/usr/bin/env python3
"""The console in headless Chromium, against a server with known data and signing on.

usage: test_console.py HOST:PORT OUT_DIR DOMAIN_A DOMAIN_B
The page is driven as a person would: key id and secret typed in, two domains, a day picked, a
metric and an interval chosen, Draw clicked. The page signs its own requests (V1, WebCrypto).
What it drew is read back from the SVG (each point carries its value) and compared with the
API's answer to the same question, asked here with our own V1 signature. Screenshots go to
OUT_DIR (console.png: the first chart)."""
import base64
import hashlib
import hmac
import json
import os
import sys
import tempfile
import time
import urllib.parse
import urllib.request
import uuid

from selenium import webdriver
from selenium.webdriver.chrome.service import Service
from selenium.webdriver.common.action_chains import ActionChains
from selenium.webdriver.common.by import By
from selenium.webdriver.support.ui import Select, WebDriverWait

ADDR, OUT, DOMAIN_A, DOMAIN_B = sys.argv[1:5]
KEY, SECRET = "tenant", "tenant-secret"


class Failed(Exception):
    pass


def pct(s):
    return urllib.parse.quote(s, safe="-_.~")


def api(params):
    """The API's own answer, V1-signed here, independently of the page."""
    time.sleep(0.15)  # 10 calls per second per key
    p = dict(params, Version="2018-05-10", Format="JSON", AccessKeyId=KEY, SignatureMethod="HMAC-SHA1",
             SignatureVersion="1.0", SignatureNonce=str(uuid.uuid4()),
             Timestamp=time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()))
    canonical = "&".join(f"{pct(k)}={pct(v)}" for k, v in sorted(p.items()))
    to_sign = "GET&%2F&" + pct(canonical)
    mac = hmac.new((SECRET + "&").encode(), to_sign.encode(), hashlib.sha1).digest()
    p["Signature"] = base64.b64encode(mac).decode()
    query = "&".join(f"{pct(k)}={pct(v)}" for k, v in p.items())
    with urllib.request.urlopen(f"http://{ADDR}/?{query}") as r:
        return json.load(r)


def browser():
    opts = webdriver.ChromeOptions()
    opts.binary_location = "/usr/bin/chromium"
    for a in ["--headless=new", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
              "--disable-background-networking", "--disable-component-update", "--disable-sync",
              "--disable-dev-shm-usage", "--window-size=1280,900",
              f"--user-data-dir={tempfile.mkdtemp(prefix='console-chromium-')}"]:
        opts.add_argument(a)
    return webdriver.Chrome(service=Service("/usr/bin/chromedriver"), options=opts)


def ask(d, domains, day, metric, interval, start=None, end=None):
    """Fills the form as a person would and waits for the chart (or the error)."""
    key = d.find_element(By.ID, "key-id")
    key.clear()
    key.send_keys(KEY)
    secret = d.find_element(By.ID, "key-secret")
    secret.clear()
    secret.send_keys(SECRET)
    box = d.find_element(By.ID, "domains")
    box.clear()
    box.send_keys(domains)
    # A date input takes keys in the browser's locale order; set it as a picker would.
    d.execute_script("const e = document.getElementById('day'); e.value = arguments[0];"
                     "e.dispatchEvent(new Event('change'));", day)
    for field, value in (("start", start), ("end", end)):
        if value:
            e = d.find_element(By.ID, field)
            e.clear()
            e.send_keys(value)
    Select(d.find_element(By.ID, "metric")).select_by_value(metric)
    Select(d.find_element(By.ID, "interval")).select_by_value(str(interval))
    d.execute_script("delete document.body.dataset.drawn; delete document.body.dataset.failed;")
    d.find_element(By.ID, "draw").click()
    WebDriverWait(d, 20).until(lambda d: d.execute_script(
        "return document.body.dataset.drawn || document.body.dataset.failed"))
    failed = d.execute_script("return document.body.dataset.failed")
    if failed:
        raise Failed(f"the page says: {failed}")


def drawn(d):
    """{series name: [(time, value)]} as the SVG carries them."""
    out = {}
    for g in d.find_elements(By.CSS_SELECTOR, "#plot g.series"):
        name = g.get_attribute("data-series")
        out[name] = [(c.get_attribute("data-time"), c.get_attribute("data-value"))
                     for c in g.find_elements(By.CSS_SELECTOR, "circle.pt")]
    return out


def expect(got, want, what):
    if got != want:
        raise Failed(f"{what}: got {str(got)[:300]}, want {str(want)[:300]}")


def test_traffic_for_two_domains_and_a_day(d):
    day, domains = "2019-12-10", f"{DOMAIN_A},{DOMAIN_B}"
    ask(d, domains, day, "traffic", 300)
    body = api({"Action": "DescribeDomainSrcTrafficData", "DomainName": domains, "Interval": "300",
                "StartTime": f"{day}T00:00:00Z", "EndTime": f"{day}T23:59:00Z"})
    slots = body["SrcTrafficDataPerInterval"]["DataModule"]
    got = drawn(d)
    expect(len(slots), 288, "slots in a day at 300 s")
    expect(got.get("All"), [(s["TimeStamp"], s["Value"]) for s in slots], "traffic drawn")
    expect(got.get("HTTPS"), [(s["TimeStamp"], s["HttpsValue"]) for s in slots], "https drawn")
    if not any(v != "0" for _, v in got["All"]):
        raise Failed("nothing but zeros drawn")
    # Labelled axes in human units, and a tooltip per point.
    labels = [t.text for t in d.find_elements(By.CSS_SELECTOR, "#plot .axis text")]
    if not any(l.endswith(("KB", "MB", "GB")) for l in labels) or "time (UTC)" not in labels:
        raise Failed(f"axis labels {labels}")
    d.save_screenshot(os.path.join(OUT, "console.png"))
    point = d.find_elements(By.CSS_SELECTOR, "#plot g.series circle.pt")[100]
    ActionChains(d).move_to_element(point).perform()
    tip = d.find_element(By.ID, "tooltip")
    if not tip.is_displayed() or "All:" not in tip.text:
        raise Failed(f"tooltip {tip.text!r}")


def test_status_codes_hourly(d):
    day, domains = "2019-12-10", f"{DOMAIN_A},{DOMAIN_B}"
    ask(d, domains, day, "codes", 3600)
    body = api({"Action": "DescribeDomainSrcHttpCodeData", "DomainName": domains, "Interval": "3600",
                "StartTime": f"{day}T00:00:00Z", "EndTime": f"{day}T23:59:00Z"})
    want = {}
    slots = body["HttpCodeData"]["UsageData"]
    for i, s in enumerate(slots):
        for c in s["Value"]["CodeProportionData"]:
            want.setdefault(c["Code"], [(x["TimeStamp"], "0") for x in slots])[i] = (s["TimeStamp"], c["Count"])
    expect(drawn(d), want, "status codes drawn")
    if len(want) < 3:
        raise Failed(f"too few codes to be a test: {list(want)}")
    d.save_screenshot(os.path.join(OUT, "console-codes.png"))


def test_bandwidth_per_minute_ends_at_the_watermark(d):
    start, end = "2019-12-10T23:00:00Z", "2019-12-11T00:30:00Z"
    ask(d, DOMAIN_A, "2019-12-10", "bandwidth", 60, start, end)
    body = api({"Action": "DescribeDomainRealTimeSrcBpsData", "DomainName": DOMAIN_A, "Interval": "60",
                "StartTime": start, "EndTime": end})
    slots = body["RealTimeSrcBpsDataPerInterval"]["DataModule"]
    expect(drawn(d).get("All"), [(s["TimeStamp"], s["Value"]) for s in slots], "bandwidth drawn")
    mark = d.find_elements(By.CSS_SELECTOR, "#plot g.mark")
    if len(slots) >= 91 or not mark:
        raise Failed(f"{len(slots)} slots, watermark mark {len(mark)}")
    expect(mark[0].get_attribute("data-watermark"), slots[-1]["TimeStamp"], "watermark drawn at the last slot")
    d.save_screenshot(os.path.join(OUT, "console-watermark.png"))


def test_a_wrong_secret_is_shown_not_drawn(d):
    d.find_element(By.ID, "key-secret").clear()
    d.find_element(By.ID, "key-secret").send_keys("wrong")
    d.find_element(By.ID, "draw").click()
    WebDriverWait(d, 10).until(lambda d: "SignatureDoesNotMatch" in d.find_element(By.ID, "status").text)


def main():
    os.makedirs(OUT, exist_ok=True)
    d = browser()
    passed = failed = 0
    try:
        d.get(f"http://{ADDR}/console")
        for test in (test_traffic_for_two_domains_and_a_day, test_status_codes_hourly,
                     test_bandwidth_per_minute_ends_at_the_watermark, test_a_wrong_secret_is_shown_not_drawn):
            try:
                test(d)
                passed += 1
                print(f"ok   {test.__name__}")
            except Exception as e:
                failed += 1
                print(f"FAIL {test.__name__}: {e}")
                d.save_screenshot(os.path.join(OUT, f"{test.__name__}.png"))
        errors = [l for l in d.get_log("browser") if l["level"] == "SEVERE" and "SignatureDoesNotMatch" not in l["message"]
                  and "400" not in l["message"]]
        if errors:
            failed += 1
            print(f"FAIL browser console errors: {errors}")
    finally:
        d.quit()
    print(f"browser: {passed} passed, {failed} failed; screenshots in {OUT}")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
