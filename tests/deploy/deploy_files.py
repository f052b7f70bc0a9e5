"""Reads deploy/'s monitoring files for the deploy tests: the Grafana
dashboard's PromQL queries (with Grafana's variables substituted), the alert
rules, the prometheus-adapter rules, and the metric names an expression uses.

Shared by check_dashboard.py (every query parses) and check_live_metrics.py
(every query answers against a real Prometheus scraping a live server).
"""

import json
import os
import re
import subprocess
import tempfile

import yaml

REPO = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", ".."))
DASHBOARD = os.path.join(REPO, "deploy", "grafana", "linserve-dashboard.json")
ALERTS = os.path.join(REPO, "deploy", "prometheus", "alerts.yaml")
ADAPTER = os.path.join(REPO, "deploy", "k8s", "prometheus-adapter",
                       "adapter-config.yaml")

# Grafana's variables and what the tests put in their place: every model,
# and a rate window that covers a few 1 s scrapes.
VARIABLES = {
    "$__rate_interval": "1m",
    "${__rate_interval}": "1m",
    "$__interval": "1m",
    "$model": ".*",
    "${model}": ".*",
}


class Query:
    """One target of one dashboard panel."""

    def __init__(self, panel, ref_id, raw_expr):
        self.panel = panel
        self.ref_id = ref_id
        self.raw_expr = raw_expr
        self.expr = substitute(raw_expr)

    def __str__(self):
        return "panel '%s' target %s" % (self.panel, self.ref_id)


def substitute(expr):
    # Longest names first, so that "${model}" is not half-replaced.
    for name in sorted(VARIABLES, key=len, reverse=True):
        expr = expr.replace(name, VARIABLES[name])
    unknown = re.findall(r"\$\{?\w+\}?", expr)
    if unknown:
        raise ValueError("expression uses Grafana variables the tests do not "
                         "know (%s): %s" % (", ".join(unknown), expr))
    return expr


def load_dashboard(path=DASHBOARD):
    with open(path) as f:
        return json.load(f)


def panels(dashboard):
    """Every panel, rows' nested panels included (rows themselves excluded)."""
    out = []
    for panel in dashboard.get("panels", []):
        if panel.get("type") == "row":
            out.extend(panel.get("panels", []))
        else:
            out.append(panel)
    return out


def dashboard_queries(dashboard):
    queries = []
    for panel in panels(dashboard):
        for target in panel.get("targets", []):
            queries.append(
                Query(panel.get("title", "?"), target.get("refId", "?"),
                      target["expr"]))
    return queries


def load_alert_rules(path=ALERTS):
    with open(path) as f:
        doc = yaml.safe_load(f)
    return [rule for group in doc["groups"] for rule in group["rules"]]


def load_adapter_rules(path=ADAPTER):
    """The rules of the prometheus-adapter config (a ConfigMap whose
    config.yaml holds them)."""
    with open(path) as f:
        config_map = yaml.safe_load(f)
    config = yaml.safe_load(config_map["data"]["config.yaml"])
    return config["rules"]


def adapter_query(rule, label_matchers='namespace="default",pod=~"a|b"',
                  group_by="pod"):
    """The rule's metricsQuery as the adapter would run it for some pods of
    one namespace (its Go template filled in)."""
    query = rule["metricsQuery"]
    series = re.match(r"\s*([a-zA-Z_:][a-zA-Z0-9_:]*)",
                      rule["seriesQuery"]).group(1)
    query = query.replace("<<.Series>>", series)
    query = query.replace("<<.LabelMatchers>>", label_matchers)
    query = query.replace("<<.GroupBy>>", group_by)
    if "<<" in query:
        raise ValueError("metricsQuery uses a template field the tests do not "
                         "fill in: " + rule["metricsQuery"])
    return query


_KEYWORDS = {
    "by", "without", "on", "ignoring", "group_left", "group_right", "bool",
    "and", "or", "unless", "offset", "inf", "nan"
}


def metric_names(expr):
    """The metric names an expression selects (not functions, aggregations,
    label names or keywords)."""
    text = re.sub(r'"(?:[^"\\]|\\.)*"', '""', expr)  # string literals
    text = re.sub(r"\{[^}]*\}", " ", text)  # label matchers
    text = re.sub(r"\[[^\]]*\]", " ", text)  # range and subquery windows
    # Grouping label lists.
    text = re.sub(
        r"\b(by|without|on|ignoring|group_left|group_right)\s*\([^)]*\)",
        " ", text)
    names = set()
    for match in re.finditer(r"(?<![\w.])([a-zA-Z_:][a-zA-Z0-9_:]*)(\s*\()?",
                             text):
        name, call = match.group(1), match.group(2)
        if call or name.lower() in _KEYWORDS:
            continue
        if re.fullmatch(r"\d+[smhdwy]", name):
            continue
        names.add(name)
    return names


def promtool_parses(named_exprs):
    """Runs `promtool check rules` on a rules file holding each expression as
    a recording rule, which makes promtool parse every one. Returns
    (ok, promtool's output)."""
    rules = [{"record": "linserve_test:query_%d" % i, "expr": expr}
             for i, (_, expr) in enumerate(named_exprs)]
    with tempfile.NamedTemporaryFile("w", suffix=".yaml",
                                     delete=False) as f:
        yaml.safe_dump({"groups": [{"name": "queries", "rules": rules}]}, f)
        path = f.name
    try:
        result = subprocess.run(["promtool", "check", "rules", path],
                                capture_output=True, text=True)
    finally:
        os.unlink(path)
    output = result.stdout + result.stderr
    # Name the queries promtool refers to by index.
    for i, (name, _) in enumerate(named_exprs):
        output = output.replace('"linserve_test:query_%d"' % i,
                                '"linserve_test:query_%d" (%s)' % (i, name))
    return result.returncode == 0, output
