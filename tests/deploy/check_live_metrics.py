#!/usr/bin/python3
"""ctest: the dashboard and the alerts work against a live server scraped by
a real Prometheus (Debian's prometheus package), on loopback.

  1. Starts two linserve replicas of the default model (127.0.0.1, free
     ports): A with default session limits; B with --max_sessions_in_ram=1,
     --session_ttl=2s, --max_queued=1, --max_batch=1, so that the workload
     also evicts, expires and rejects. Starts `prometheus` scraping both
     every second, with deploy/prometheus/alerts.yaml loaded and the
     namespace / pod labels prometheus-operator would add.
  2. Runs a known workload twice with linserve-cli (every series then
     increases between two scrapes, so rates are positive): generate, a
     chat-like session (two generate turns on one session), ingest, score,
     sessions create / fork / export / import, a get of a missing session
     (NOT_FOUND), and on B sessions beyond its RAM limit (evictions), idle
     sessions (expired after 2 s) and a concurrent bench (queue_full
     rejections).
  3. `promtool check metrics` on each replica's /metrics: must be clean,
     and every linserve_ series has the model label. Every metric name the dashboard, the alerts and the prometheus-adapter
     rule use exists in the scrape (`up` is Prometheus's own).
  4. Every dashboard query (variables substituted) returns data through
     Prometheus's HTTP API, with a finite value > 0, except the two gauges
     that are legitimately 0 once the workload is over
     (linserve_num_requests_running / _waiting: their series must exist).
     up{job="linserve"} is 1 for both replicas; every alert rule evaluates
     without error; the adapter rule's queries answer per pod.

  check_live_metrics.py LINSERVE LINSERVE_CLI
Exits 1 listing every problem, with the servers' and Prometheus's logs.
"""

import json
import math
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
import urllib.parse
import urllib.request

import yaml

import deploy_files

MODEL = os.path.join(deploy_files.REPO, "models", "default")
# Gauges that are 0 when nothing runs: their series must exist, any value.
MAY_BE_ZERO = ("linserve_num_requests_running", "linserve_num_requests_waiting")
TEXT = (
    "In the beginning God created the heaven and the earth. And the earth "
    "was without form, and void; and darkness was upon the face of the deep. "
    "And the Spirit of God moved upon the face of the waters. And God said, "
    "Let there be light: and there was light. And God saw the light, that it "
    "was good: and God divided the light from the darkness.\n") * 4


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def http_get(url, timeout=5):
    with urllib.request.urlopen(url, timeout=timeout) as response:
        return response.read().decode()


class Failure(Exception):
    pass


class Harness:
    def __init__(self, linserve, cli):
        self.linserve = linserve
        self.cli = cli
        self.tmp = tempfile.mkdtemp(prefix="linserve-live-")
        self.processes = []  # (name, Popen, log path)

    def start(self, name, argv):
        log_path = os.path.join(self.tmp, name + ".log")
        log = open(log_path, "w")
        process = subprocess.Popen(argv, stdout=log, stderr=subprocess.STDOUT,
                                   stdin=subprocess.DEVNULL)
        self.processes.append((name, process, log_path))
        return process

    def start_linserve(self, name, extra):
        grpc_port, metrics_port = free_port(), free_port()
        spill = os.path.join(self.tmp, name + "-spill")
        os.makedirs(spill)
        process = self.start(name, [
            self.linserve, "--model", MODEL,
            "--listen", "127.0.0.1:%d" % grpc_port,
            "--metrics_port", str(metrics_port), "--spill_dir", spill,
            "--threads", "1", "--drain_grace", "1s"
        ] + extra)
        address = "127.0.0.1:%d" % grpc_port
        deadline = time.time() + 60
        while True:
            if process.poll() is not None:
                raise Failure("linserve %s exited with %d at start" %
                              (name, process.returncode))
            if subprocess.run([self.cli, "health", "--quiet", "--address",
                               address], capture_output=True).returncode == 0:
                break
            if time.time() > deadline:
                raise Failure("linserve %s not SERVING after 60 s" % name)
            time.sleep(0.2)
        try:
            http_get("http://127.0.0.1:%d/metrics" % metrics_port)
        except OSError as e:
            raise Failure("linserve %s serves no /metrics on --metrics_port "
                          "%d: %s" % (name, metrics_port, e))
        return address, metrics_port

    def run_cli(self, address, args, expect_ok=True, stdin=None):
        result = subprocess.run([self.cli] + args + ["--address", address],
                                input=stdin, capture_output=True, text=True,
                                timeout=120)
        if expect_ok and result.returncode != 0:
            raise Failure("linserve-cli %s failed (%d): %s" %
                          (" ".join(args), result.returncode,
                           result.stderr.strip()))
        if not expect_ok and result.returncode == 0:
            raise Failure("linserve-cli %s succeeded; the workload needs it "
                          "to fail" % " ".join(args))
        return result

    def stop(self):
        for name, process, _ in reversed(self.processes):
            if process.poll() is None:
                process.terminate()
                try:
                    process.wait(timeout=15)
                except subprocess.TimeoutExpired:
                    process.kill()
                    process.wait()

    def logs(self):
        out = []
        for name, _, path in self.processes:
            with open(path, errors="replace") as f:
                tail = f.read()[-3000:]
            out.append("---- %s log (tail) ----\n%s" % (name, tail))
        return "\n".join(out)


def workload(h, a, b, phase, text_file):
    """One round of the known workload; ids carry the phase."""
    p = str(phase)
    # A: generation, a chat-like session, ingest, score, session operations.
    h.run_cli(a, ["generate", "--max_tokens", "12", "--temperature", "0",
                  "In the beginning"])
    h.run_cli(a, ["sessions", "create", "chat-" + p])
    for turn in ("Who made the light?", "And what of the waters?"):
        h.run_cli(a, ["generate", "--session", "chat-" + p, "--max_tokens",
                      "8", turn])
    h.run_cli(a, ["sessions", "create", "doc-" + p])
    h.run_cli(a, ["ingest", text_file, "--session", "doc-" + p, "--quiet"])
    h.run_cli(a, ["score", text_file])
    h.run_cli(a, ["sessions", "fork", "doc-" + p, "fork-" + p])
    state = os.path.join(h.tmp, "fork-%s.state" % p)
    h.run_cli(a, ["sessions", "export", "fork-" + p, state])
    h.run_cli(a, ["sessions", "import", state, "imported-" + p])
    h.run_cli(a, ["sessions", "get", "no-such-session"], expect_ok=False)
    # B: more sessions than its RAM holds (evictions; they expire after 2 s
    # idle), and more concurrent calls than it queues (rejections).
    for i in range(3):
        h.run_cli(b, ["sessions", "create", "b%s-%d" % (p, i)])
        h.run_cli(b, ["generate", "--session", "b%s-%d" % (p, i),
                      "--max_tokens", "4", "Let there be light"])
    # Its exit status is not checked: some of its calls are refused on
    # purpose (the rejection panels check that they were).
    subprocess.run([h.cli, "bench", "--concurrency", "6", "--requests", "24",
                    "--max_tokens", "16", "--mix", "generate=1", "--address",
                    b], capture_output=True, timeout=120)


def scrape_names(text):
    names = set()
    for line in text.splitlines():
        if line and not line.startswith("#"):
            names.add(line.split("{")[0].split(" ")[0])
    return names


class Prometheus:
    def __init__(self, h, targets):
        self.port = free_port()
        self.url = "http://127.0.0.1:%d" % self.port
        config = {
            "global": {"scrape_interval": "1s", "evaluation_interval": "1s"},
            "rule_files": [deploy_files.ALERTS],
            "scrape_configs": [{
                "job_name": "linserve",
                "static_configs": [
                    # The labels prometheus-operator adds to a ServiceMonitor's
                    # targets (prometheus-adapter maps them to pods).
                    {"targets": ["127.0.0.1:%d" % port],
                     "labels": {"namespace": "default", "pod": pod}}
                    for pod, port in targets
                ],
            }],
        }
        config_path = os.path.join(h.tmp, "prometheus.yml")
        with open(config_path, "w") as f:
            yaml.safe_dump(config, f)
        h.start("prometheus", [
            "prometheus", "--config.file=" + config_path,
            "--storage.tsdb.path=" + os.path.join(h.tmp, "tsdb"),
            "--web.listen-address=127.0.0.1:%d" % self.port,
            "--log.level=warn"
        ])
        deadline = time.time() + 30
        while True:
            try:
                http_get(self.url + "/-/ready")
                break
            except OSError:
                if time.time() > deadline:
                    raise Failure("prometheus not ready after 30 s")
                time.sleep(0.2)

    def api(self, path, **params):
        url = "%s/api/v1/%s?%s" % (self.url, path,
                                   urllib.parse.urlencode(params))
        body = json.loads(http_get(url))
        if body.get("status") != "success":
            raise Failure("prometheus %s %s: %s" % (path, params, body))
        return body["data"]

    def query(self, expr):
        return self.api("query", query=expr)

    def wait_for(self, expr, what, timeout=30):
        deadline = time.time() + timeout
        while True:
            if self.query(expr)["result"]:
                return
            if time.time() > deadline:
                raise Failure("prometheus: %s (%s) not true after %d s" %
                              (what, expr, timeout))
            time.sleep(0.5)


def values(data):
    if data["resultType"] == "vector":
        return [float(r["value"][1]) for r in data["result"]]
    if data["resultType"] == "scalar":
        return [float(data["result"][1])]
    return []


def run(h, problems):
    a, a_metrics = h.start_linserve("linserve-a", [])
    b, b_metrics = h.start_linserve("linserve-b", [
        "--max_sessions_in_ram", "1", "--session_ttl", "2s", "--max_queued",
        "1", "--max_batch", "1"
    ])
    prometheus = Prometheus(h, [("a", a_metrics), ("b", b_metrics)])
    prometheus.wait_for('count(up{job="linserve"} == 1) == 2',
                        "both replicas scraped")

    text_file = os.path.join(h.tmp, "genesis.txt")
    with open(text_file, "w") as f:
        f.write(TEXT)
    workload(h, a, b, 1, text_file)
    time.sleep(3)  # a few scrapes between the rounds
    workload(h, a, b, 2, text_file)
    finished = time.time()

    # 3. The scrapes: clean, and every metric the files use is there.
    scraped = set()
    for name, port in (("a", a_metrics), ("b", b_metrics)):
        text = http_get("http://127.0.0.1:%d/metrics" % port)
        with open(os.path.join(h.tmp, "metrics-%s.txt" % name), "w") as f:
            f.write(text)
        lint = subprocess.run(["promtool", "check", "metrics"], input=text,
                              capture_output=True, text=True)
        if lint.returncode != 0 or lint.stdout.strip() or lint.stderr.strip():
            problems.append("promtool check metrics on replica %s's /metrics "
                            "is not clean:\n%s%s" %
                            (name, lint.stdout, lint.stderr))
        scraped |= scrape_names(text)
        # Every linserve series carries the model label (prometheus-cpp's
        # own exposer_* series are not the server's to label).
        unlabeled = sorted({
            line.split("{")[0].split(" ")[0] for line in text.splitlines()
            if line.startswith("linserve_") and 'model="' not in line
        })
        if unlabeled:
            problems.append("replica %s: series without the model label: %s"
                            % (name, ", ".join(unlabeled)))
    dashboard = deploy_files.load_dashboard()
    queries = deploy_files.dashboard_queries(dashboard)
    alerts = deploy_files.load_alert_rules()
    adapter_rules = deploy_files.load_adapter_rules()
    used = {}
    for q in queries:
        for n in deploy_files.metric_names(q.expr):
            used.setdefault(n, "dashboard " + str(q))
    for rule in alerts:
        for n in deploy_files.metric_names(rule["expr"]):
            used.setdefault(n, "alert " + rule["alert"])
    for rule in adapter_rules:
        for n in deploy_files.metric_names(deploy_files.adapter_query(rule)):
            used.setdefault(n, "prometheus-adapter rule")
    for name, where in sorted(used.items()):
        if name != "up" and name not in scraped:
            problems.append("%s uses %s, which the live scrape does not have"
                            % (where, name))

    # Prometheus has scraped everything the workload did (and B's sessions
    # have expired).
    prometheus.wait_for(
        'timestamp(up{job="linserve", pod="b"}) > %f' % (finished + 1.5),
        "a scrape after the workload")
    prometheus.wait_for(
        'sum(increase(linserve_session_expired_total[1m])) > 0',
        "replica b's sessions expired", timeout=20)

    # 4. Every panel answers.
    answered = 0
    for q in queries:
        data = prometheus.query(q.expr)
        vals = values(data)
        finite_positive = [v for v in vals if math.isfinite(v) and v > 0]
        if not vals:
            problems.append("%s returns no data: %s" % (q, q.expr))
        elif not finite_positive and not any(m in q.expr for m in MAY_BE_ZERO):
            problems.append("%s returns no finite value > 0 (%s): %s" %
                            (q, vals, q.expr))
        else:
            answered += 1
    up = values(prometheus.query('up{job="linserve"}'))
    if up != [1.0, 1.0]:
        problems.append('up{job="linserve"} is %s, expected 1 for both '
                        "replicas (LinserveInstanceDown's series)" % up)
    loaded = {}
    for group in prometheus.api("rules")["groups"]:
        for rule in group["rules"]:
            loaded[rule.get("name")] = rule
    for rule in alerts:
        got = loaded.get(rule["alert"])
        if got is None:
            problems.append("alert %s is not loaded by prometheus" %
                            rule["alert"])
        elif got.get("health") != "ok":
            problems.append("alert %s evaluates with health %s: %s" %
                            (rule["alert"], got.get("health"),
                             got.get("lastError")))
    for rule in adapter_rules:
        series = prometheus.api("series", **{"match[]": rule["seriesQuery"]})
        pods = sorted({s.get("pod") for s in series})
        if pods != ["a", "b"]:
            problems.append("prometheus-adapter seriesQuery %s finds pods %s, "
                            "expected a and b" % (rule["seriesQuery"], pods))
        per_pod = prometheus.query(deploy_files.adapter_query(rule))["result"]
        if sorted(r["metric"].get("pod") for r in per_pod) != ["a", "b"]:
            problems.append("prometheus-adapter metricsQuery answers %s, "
                            "expected one value per pod" % per_pod)
    return "%d of %d dashboard queries answer; %d metric names checked; %d " \
           "alerts evaluate" % (answered, len(queries), len(used), len(alerts))


def main():
    if len(sys.argv) != 3:
        print(__doc__)
        return 2
    for tool in ("prometheus", "promtool"):
        if shutil.which(tool) is None:
            print("FAIL: %s is not installed (Debian package prometheus; "
                  "scripts/install-deps.sh installs it)" % tool)
            return 1
    h = Harness(os.path.abspath(sys.argv[1]), os.path.abspath(sys.argv[2]))
    problems = []
    summary = ""
    try:
        summary = run(h, problems)
    except (Failure, OSError, subprocess.TimeoutExpired) as e:
        problems.append("%s: %s" % (type(e).__name__, e))
    finally:
        h.stop()
    if problems:
        print("FAIL:\n  " + "\n  ".join(problems))
        print(h.logs())
        print("(files kept in %s)" % h.tmp)
        return 1
    shutil.rmtree(h.tmp, ignore_errors=True)
    print("OK: " + summary)
    return 0


if __name__ == "__main__":
    sys.exit(main())
