#!/usr/bin/python3
"""ctest: every alert of deploy/prometheus/alerts.yaml has a severity, a
summary, a description and a runbook_url naming a section of
docs/operations.md that exists; and every metric the alerts, the dashboard
and the prometheus-adapter rule use is one server/metrics.cc defines (a
static check: check_live_metrics.py checks the same against a live scrape).

  check_alerts.py
Exits 1 listing every problem.
"""

import os
import re
import sys

import deploy_files

DOCS = os.path.join(deploy_files.REPO, "docs", "operations.md")
METRICS_CC = os.path.join(deploy_files.REPO, "server", "metrics.cc")
# Series Prometheus makes itself.
PROMETHEUS_SERIES = {"up"}


def github_anchors(markdown):
    """The anchors GitHub gives the headings of a Markdown file."""
    anchors = set()
    in_code = False
    for line in markdown.splitlines():
        if line.startswith("```"):
            in_code = not in_code
        if in_code:
            continue
        match = re.match(r"^#{1,6}\s+(.*?)\s*#*\s*$", line)
        if match:
            text = re.sub(r"[`*_\[\]]|\(.*?\)", "", match.group(1)).lower()
            anchors.add(re.sub(r"[^\w\- ]", "", text).replace(" ", "-"))
    return anchors


def defined_metrics():
    """Series names server/metrics.cc registers (histograms with their
    _bucket, _sum and _count series)."""
    with open(METRICS_CC) as f:
        source = f.read()
    names = set()
    # .Name("x") after BuildCounter / BuildGauge / BuildHistogram, and the
    # counter("x", ...), gauge(...), histogram(...) helpers.
    for kind, name in re.findall(
            r'Build(Counter|Gauge|Histogram)\(\)\s*\.Name\("(\w+)"\)', source):
        names.add((kind.lower(), name))
    for kind, name in re.findall(r'\b(counter|gauge|histogram)\(\s*"(\w+)"',
                                 source):
        names.add((kind, name))
    series = set()
    for kind, name in names:
        if kind == "histogram":
            series |= {name + "_bucket", name + "_sum", name + "_count"}
        else:
            series.add(name)
    return series


def main():
    problems = []
    with open(DOCS) as f:
        anchors = github_anchors(f.read())
    rules = deploy_files.load_alert_rules()
    if not rules:
        problems.append("alerts.yaml has no rules")
    for rule in rules:
        name = rule.get("alert")
        if not name:
            problems.append("a rule without `alert` (recording rules belong "
                            "elsewhere): %s" % rule)
            continue
        annotations = rule.get("annotations", {})
        for key in ("summary", "description", "runbook_url"):
            if not annotations.get(key):
                problems.append("alert %s has no %s annotation" % (name, key))
        if rule.get("labels", {}).get("severity") not in ("critical",
                                                          "warning", "info"):
            problems.append("alert %s has no severity label (critical, "
                            "warning or info)" % name)
        url = annotations.get("runbook_url", "")
        match = re.fullmatch(r"docs/operations\.md#([\w-]+)", url)
        if not match:
            problems.append("alert %s: runbook_url %r is not "
                            "docs/operations.md#SECTION" % (name, url))
        elif match.group(1) not in anchors:
            problems.append("alert %s: runbook_url %s names no section of "
                            "docs/operations.md (sections: %s)" %
                            (name, url, ", ".join(sorted(anchors))))
        elif match.group(1) != name.lower():
            problems.append("alert %s: its runbook section should be "
                            "#%s" % (name, name.lower()))

    defined = defined_metrics() | PROMETHEUS_SERIES
    used = {}
    for rule in rules:
        for metric in deploy_files.metric_names(rule["expr"]):
            used.setdefault(metric, "alert " + rule.get("alert", "?"))
    for query in deploy_files.dashboard_queries(deploy_files.load_dashboard()):
        for metric in deploy_files.metric_names(query.expr):
            used.setdefault(metric, "dashboard " + str(query))
    for rule in deploy_files.load_adapter_rules():
        for metric in deploy_files.metric_names(
                deploy_files.adapter_query(rule)):
            used.setdefault(metric, "prometheus-adapter rule")
    for metric, where in sorted(used.items()):
        if metric not in defined:
            problems.append("%s uses %s, which server/metrics.cc does not "
                            "define" % (where, metric))

    if problems:
        print("FAIL:\n  " + "\n  ".join(problems))
        return 1
    print("OK: %d alerts with summary, description and a runbook section; "
          "%d metric names used, all defined by server/metrics.cc" %
          (len(rules), len(used)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
