#!/usr/bin/env python3
"""Checks template.yaml for what cfn-lint does not: every function on provided.al2023 and arm64,
built by cargo-lambda from a binary this workspace has, every schedule a valid EventBridge
cron() or rate() expression (a !Ref is checked through its parameter's default), and every queue
a function polls with a visibility timeout of at least six times the function's timeout (what
Lambda asks, so a slow batch is not handed to a second poller).

usage: check_template.py TEMPLATE   (exit 1 with the problems listed)"""
import re
import sys
import tomllib
from pathlib import Path

import yaml


class Loader(yaml.SafeLoader):
    pass


def tagged(loader, suffix, node):
    if isinstance(node, yaml.ScalarNode):
        value = loader.construct_scalar(node)
    elif isinstance(node, yaml.SequenceNode):
        value = loader.construct_sequence(node)
    else:
        value = loader.construct_mapping(node)
    return {"!" + suffix: value}


Loader.add_multi_constructor("!", tagged)

CRON_FIELD = {
    0: r"(\*|[0-5]?\d([-,/][0-5]?\d)*|\*/\d+)",                      # minutes
    1: r"(\*|(1?\d|2[0-3])([-,/](1?\d|2[0-3]))*|\*/\d+)",           # hours
    2: r"(\*|\?|L|W|([1-9]|[12]\d|3[01])W?([-,/]([1-9]|[12]\d|3[01]))*|\*/\d+)",  # day of month
    3: r"(\*|([1-9]|1[0-2]|JAN|FEB|MAR|APR|MAY|JUN|JUL|AUG|SEP|OCT|NOV|DEC)([-,/]([1-9]|1[0-2]|[A-Z]{3}))*|\*/\d+)",
    4: r"(\*|\?|L|([1-7]|SUN|MON|TUE|WED|THU|FRI|SAT)(L|#[1-5])?([-,/]([1-7]|[A-Z]{3}))*|\*/\d+)",  # day of week
    5: r"(\*|(19[7-9]\d|2[01]\d\d)([-,/](19[7-9]\d|2[01]\d\d))*|\*/\d+)",  # year
}


def schedule_problem(expr: str):
    m = re.fullmatch(r"rate\((\d+) (minute|minutes|hour|hours|day|days)\)", expr)
    if m:
        n, unit = int(m.group(1)), m.group(2)
        if n == 0:
            return "rate() needs a positive value"
        if (n == 1) != (not unit.endswith("s")):
            return f"rate({n} {unit}): use the singular unit for 1 and the plural otherwise"
        return None
    m = re.fullmatch(r"cron\((.*)\)", expr)
    if not m:
        return "not cron(...) or rate(...)"
    fields = m.group(1).split()
    if len(fields) != 6:
        return f"cron() takes 6 fields (minutes hours day-of-month month day-of-week year), got {len(fields)}"
    for i, f in enumerate(fields):
        if not re.fullmatch(CRON_FIELD[i], f.upper()):
            return f"cron() field {i + 1} {f!r} is not valid"
    if (fields[2] == "?") == (fields[4] == "?"):
        return "cron(): exactly one of day-of-month and day-of-week must be '?'"
    return None


def guard_problems(doc) -> list:
    """The API function keeps nonces and call counts in a DynamoDB table of this template (key
    `pk` a string, TTL on `expires`) and may only put and update items of that table."""
    resources = doc.get("Resources", {})
    api = resources.get("ApiFunction", {}).get("Properties", {})
    env = api.get("Environment", {}).get("Variables", {})
    if env.get("SRCTRAFFIC_GUARD") != "dynamodb":
        return ["ApiFunction: SRCTRAFFIC_GUARD must be dynamodb (nonces and rates per instance otherwise)"]
    ref = env.get("SRCTRAFFIC_GUARD_TABLE")
    table = ref.get("!Ref") if isinstance(ref, dict) else None
    props = resources.get(table, {}).get("Properties", {})
    if resources.get(table, {}).get("Type") != "AWS::DynamoDB::Table":
        return [f"ApiFunction: SRCTRAFFIC_GUARD_TABLE {ref!r} is not a DynamoDB table of this template"]
    problems = []
    if props.get("KeySchema") != [{"AttributeName": "pk", "KeyType": "HASH"}]:
        problems.append(f"{table}: the key must be pk alone")
    ttl = props.get("TimeToLiveSpecification", {})
    if ttl.get("AttributeName") != "expires" or ttl.get("Enabled") is not True:
        problems.append(f"{table}: TTL must be enabled on expires")
    allowed = set()
    for policy in api.get("Policies", []):
        for st in policy.get("Statement", []) if isinstance(policy, dict) else []:
            actions = st.get("Action", [])
            actions = [actions] if isinstance(actions, str) else actions
            for a in actions:
                if a.startswith("dynamodb:"):
                    if st.get("Resource") != {"!GetAtt": f"{table}.Arn"}:
                        problems.append(f"ApiFunction: {a} on {st.get('Resource')!r}, not the guard table alone")
                    allowed.add(a)
    if allowed != {"dynamodb:PutItem", "dynamodb:UpdateItem"}:
        problems.append(f"ApiFunction: DynamoDB actions {sorted(allowed)}, want exactly PutItem and UpdateItem")
    return problems


def console_problems(doc) -> list:
    """The console is off unless the stack's Console parameter turns it on, and its page route
    reaches the API function."""
    params = doc.get("Parameters", {})
    api = doc.get("Resources", {}).get("ApiFunction", {}).get("Properties", {})
    env = api.get("Environment", {}).get("Variables", {})
    problems = []
    if env.get("SRCTRAFFIC_CONSOLE") != {"!Ref": "Console"}:
        problems.append("ApiFunction: SRCTRAFFIC_CONSOLE must come from the Console parameter")
    console = params.get("Console", {})
    if console.get("Default") != "off" or sorted(console.get("AllowedValues", [])) != ["off", "on"]:
        problems.append("Console parameter: on or off, off by default")
    routes = {(e.get("Properties", {}).get("Method"), e.get("Properties", {}).get("Path"))
              for e in api.get("Events", {}).values() if e.get("Type") == "HttpApi"}
    if ("GET", "/console") not in routes:
        problems.append(f"ApiFunction: no GET /console route among {sorted(routes)}")
    return problems


def main() -> int:
    path = Path(sys.argv[1])
    doc = yaml.load(path.read_text(), Loader=Loader)
    root = Path(__file__).resolve().parent.parent
    binaries = set()
    for manifest in root.glob("**/Cargo.toml"):
        if "target" in manifest.parts:
            continue
        data = tomllib.loads(manifest.read_text())
        binaries.update(b["name"] for b in data.get("bin", []))
    params = doc.get("Parameters", {})
    glob = doc.get("Globals", {}).get("Function", {})
    problems = []
    functions = {k: v for k, v in doc.get("Resources", {}).items()
                 if v.get("Type") in ("AWS::Serverless::Function", "AWS::Lambda::Function")}
    if not functions:
        problems.append("no functions")
    for name, res in functions.items():
        props = res.get("Properties", {})
        runtime = props.get("Runtime", glob.get("Runtime"))
        arch = props.get("Architectures", glob.get("Architectures"))
        if runtime != "provided.al2023":
            problems.append(f"{name}: Runtime {runtime!r}, want provided.al2023")
        if arch != ["arm64"]:
            problems.append(f"{name}: Architectures {arch!r}, want [arm64]")
        meta = res.get("Metadata", {})
        if meta.get("BuildMethod") != "rust-cargolambda":
            problems.append(f"{name}: Metadata.BuildMethod must be rust-cargolambda")
        binary = meta.get("BuildProperties", {}).get("Binary")
        if binary not in binaries:
            problems.append(f"{name}: BuildProperties.Binary {binary!r} is not a binary of this workspace {sorted(binaries)}")
        for ev_name, ev in props.get("Events", {}).items():
            if ev.get("Type") in ("Schedule", "ScheduleV2"):
                p = ev.get("Properties", {})
                expr = p.get("ScheduleExpression", p.get("Schedule"))
                if isinstance(expr, dict) and "!Ref" in expr:
                    expr = params.get(expr["!Ref"], {}).get("Default")
                why = schedule_problem(str(expr))
                if why:
                    problems.append(f"{name}.{ev_name}: schedule {expr!r}: {why}")
            if ev.get("Type") == "SQS":
                queue = ev.get("Properties", {}).get("Queue")
                qname = queue.get("!GetAtt", "").split(".")[0] if isinstance(queue, dict) else None
                qres = doc.get("Resources", {}).get(qname, {})
                visibility = qres.get("Properties", {}).get("VisibilityTimeout", 30)
                timeout = props.get("Timeout", glob.get("Timeout", 3))
                if not qres:
                    problems.append(f"{name}.{ev_name}: queue {queue!r} is not a resource of this template")
                elif int(visibility) < 6 * int(timeout):
                    problems.append(f"{name}.{ev_name}: queue {qname} VisibilityTimeout {visibility} is under 6 x the function's Timeout {timeout}")
    problems += guard_problems(doc)
    problems += console_problems(doc)
    for p in problems:
        print(f"template: {p}")
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
