#!/usr/bin/python3
"""ctest: deploy/grafana/linserve-dashboard.json is a Grafana dashboard with
the datasource and model variables, the panels issue 5 asks for, every query
filtered by model=~"$model", and every PromQL query parses (Grafana's
variables substituted; `promtool check rules` parses each as a recording
rule). Also parses the prometheus-adapter rule's queries.

  check_dashboard.py [DASHBOARD_JSON]
Exits 1 listing every problem.
"""

import re
import sys

import deploy_files

# Metrics the dashboard must graph (issue 5, section 2): throughput by kind,
# TTFT and inter-token latency, end-to-end latency, queue and running
# requests, batch fill, rejections, errors by code, sessions, state memory,
# evictions.
REQUIRED_METRICS = {
    "linserve_prompt_tokens_total",
    "linserve_generation_tokens_total",
    "linserve_ingest_tokens_total",
    "linserve_time_to_first_token_seconds_bucket",
    "linserve_inter_token_latency_seconds_bucket",
    "linserve_e2e_request_latency_seconds_bucket",
    "linserve_request_queue_time_seconds_bucket",
    "linserve_num_requests_running",
    "linserve_num_requests_waiting",
    "linserve_batch_size_sum",
    "linserve_batch_size_count",
    "linserve_step_tokens_sum",
    "linserve_rejected_total",
    "linserve_requests_total",
    "linserve_sessions",
    "linserve_session_state_bytes",
    "linserve_session_evictions_total",
    "linserve_session_expired_total",
}


def check_structure(dashboard, problems):
    if not 36 <= dashboard.get("schemaVersion", 0) <= 41:
        problems.append("schemaVersion %r: expected a Grafana 10-era schema "
                        "(36..41)" % dashboard.get("schemaVersion"))
    for key in ("title", "uid"):
        if not dashboard.get(key):
            problems.append("dashboard has no %s" % key)
    variables = {v.get("name"): v for v in
                 dashboard.get("templating", {}).get("list", [])}
    ds = variables.get("datasource")
    if not ds or ds.get("type") != "datasource" or ds.get(
            "query") != "prometheus":
        problems.append('no variable "datasource" of type "datasource" with '
                        'query "prometheus"')
    model = variables.get("model")
    model_query = (model or {}).get("query")
    if isinstance(model_query, dict):
        model_query = model_query.get("query")
    if not model or model.get("type") != "query" or re.sub(
            r"\s", "", model_query or "") != "label_values(linserve_build_info,model)":
        problems.append('no variable "model" of type "query" with query '
                        'label_values(linserve_build_info, model)')
    elif model.get("datasource", {}).get("uid") != "${datasource}":
        problems.append('variable "model" does not query ${datasource}')

    ids = set()
    for panel in deploy_files.panels(dashboard):
        title = panel.get("title", "?")
        if panel.get("id") in ids:
            problems.append("panel '%s': duplicate id %r" % (title, panel.get("id")))
        ids.add(panel.get("id"))
        grid = panel.get("gridPos", {})
        if not all(k in grid for k in ("x", "y", "w", "h")):
            problems.append("panel '%s': gridPos needs x, y, w, h" % title)
        if panel.get("datasource", {}).get("uid") != "${datasource}":
            problems.append("panel '%s': datasource is not ${datasource}" % title)
        targets = panel.get("targets", [])
        if not targets:
            problems.append("panel '%s' has no queries" % title)
        for target in targets:
            expr = target.get("expr", "")
            where = "panel '%s' target %s" % (title, target.get("refId"))
            # Every selector of a linserve metric carries the model filter.
            for match in re.finditer(r"\b(linserve_\w+)(\{[^}]*\})?", expr):
                if 'model=~"$model"' not in (match.group(2) or ""):
                    problems.append('%s: %s is not filtered by '
                                    'model=~"$model": %s' %
                                    (where, match.group(1), expr))
            if "linserve_" not in expr:
                problems.append("%s: graphs no linserve metric: %s" %
                                (where, expr))


def main():
    path = sys.argv[1] if len(sys.argv) > 1 else deploy_files.DASHBOARD
    dashboard = deploy_files.load_dashboard(path)
    problems = []
    check_structure(dashboard, problems)

    queries = deploy_files.dashboard_queries(dashboard)
    used = set()
    for query in queries:
        used |= deploy_files.metric_names(query.expr)
    missing = sorted(REQUIRED_METRICS - used)
    if missing:
        problems.append("the dashboard graphs none of: " + ", ".join(missing))
    if not any('code!="OK"' in q.raw_expr and "linserve_requests_total" in
               q.raw_expr for q in queries):
        problems.append('no panel graphs errors (linserve_requests_total with '
                        'code!="OK")')

    named = [(str(q), q.expr) for q in queries]
    for rule in deploy_files.load_adapter_rules():
        named.append(("prometheus-adapter seriesQuery", rule["seriesQuery"]))
        named.append(("prometheus-adapter metricsQuery",
                      deploy_files.adapter_query(rule)))
    ok, output = deploy_files.promtool_parses(named)
    if not ok:
        problems.append("promtool cannot parse every query:\n" + output)

    if problems:
        print("FAIL: %s\n  " % path + "\n  ".join(problems))
        return 1
    print("OK: %d panels, %d queries parse (promtool), every one filtered by "
          "model; metrics graphed: %s" %
          (len(deploy_files.panels(dashboard)), len(queries),
           ", ".join(sorted(used))))
    return 0


if __name__ == "__main__":
    sys.exit(main())
