// ctest: every Kubernetes manifest under deploy/k8s, and the rendered
// Kustomize base and example overlay (tests/deploy/kustomize_lite.js),
// validates against the JSON schemas of Kubernetes 1.27 (kubernetes-models),
// prometheus-operator and Istio (@kubernetes-models/*). The schemas accept
// unknown fields, so every field is also checked to be one the schema reads
// (a misspelt `readinesProbe` fails). Then the pieces agree with each other
// and with the server:
//   - the Deployment's gRPC probes (grpc.health.v1, service "") and ports
//     are the ports the ConfigMap's flags serve (--listen, --metrics_port);
//   - every flag in the ConfigMap is one `linserve --helpfull` lists, and
//     linserve parses the file (`--flagfile`) without error; the
//     spill directory is a mounted volume, the drain grace fits in
//     terminationGracePeriodSeconds after the preStop sleep;
//   - non-root, read-only root filesystem, resources set;
//   - Services, headless Service, ServiceMonitor, HPA (its Pods metric is
//     the one the prometheus-adapter rule serves), PDB (maxUnavailable 1),
//     Istio DestinationRule and the Envoy example route on the session
//     header the client library sends (client/call_control.h).
//
//   node validate_manifests.js NODE_PREFIX LINSERVE
// NODE_PREFIX: where `npm ci` installed tests/deploy/package.json.
"use strict";

const fs = require("fs");
const path = require("path");
const { createRequire } = require("module");
const { execFileSync } = require("child_process");
const kustomize = require("./kustomize_lite.js");

const REPO = path.resolve(__dirname, "..", "..");
const K8S = path.join(REPO, "deploy", "k8s");
const GRPC_PORT = 50051;
const METRICS_PORT = 9464;

const [nodePrefix, linserve] = process.argv.slice(2);
if (!nodePrefix || !linserve) {
  console.error("usage: node validate_manifests.js NODE_PREFIX LINSERVE");
  process.exit(2);
}
const requireTooling = createRequire(path.join(path.resolve(nodePrefix),
                                               "package.json"));
const yaml = requireTooling("yaml");

const problems = [];
let checks = 0;
function check(condition, message) {
  checks += 1;
  if (!condition) problems.push(message);
  return condition;
}

// --- Schemas -------------------------------------------------------------

const SCHEMA_PACKAGES = [
  "kubernetes-models",
  "@kubernetes-models/prometheus-operator",
  "@kubernetes-models/istio",
];

function modelClass(apiVersion, kind) {
  const modulePath = apiVersion.includes("/") ? apiVersion : `v1`;
  for (const pkg of SCHEMA_PACKAGES) {
    let mod;
    try {
      mod = requireTooling(`${pkg}/${modulePath}`);
    } catch (e) {
      continue;
    }
    if (mod[kind]) return mod[kind];
  }
  return null;
}

// Validates `obj` with the model's schema while recording which fields the
// validator reads; returns the schema errors and the fields it never read.
function validateStrict(Model, obj) {
  const visits = new Map();  // object -> {read: Set, enumerated: bool}
  const proxies = new Map();
  function wrap(value) {
    if (value === null || typeof value !== "object") return value;
    if (proxies.has(value)) return proxies.get(value);
    const visit = { read: new Set(), enumerated: false };
    visits.set(value, visit);
    const proxy = new Proxy(value, {
      get(target, key, receiver) {
        if (typeof key === "string") visit.read.add(key);
        return wrap(Reflect.get(target, key, receiver));
      },
      has(target, key) {
        if (typeof key === "string") visit.read.add(key);
        return Reflect.has(target, key);
      },
      ownKeys(target) {
        visit.enumerated = true;  // a map (labels) or additionalProperties
        return Reflect.ownKeys(target);
      },
    });
    proxies.set(value, proxy);
    return proxy;
  }
  // The root as an instance of the model (some models find their schema
  // through the prototype), sharing the manifest's nested objects.
  const root = Object.assign(Object.create(Model.prototype), obj);
  let errors = [];
  try {
    Model.prototype.validate.call(wrap(root));
  } catch (e) {
    errors = [e.message];
  }
  const unknown = [];
  (function walk(value, where) {
    if (value === null || typeof value !== "object") return;
    if (Array.isArray(value)) {
      value.forEach((v, i) => walk(v, `${where}/${i}`));
      return;
    }
    const visit = visits.get(value);
    // Not reached (below an unknown field), a map, or a free-form object
    // (the schema reads none of its fields).
    if (!visit || visit.enumerated || visit.read.size === 0) return;
    for (const key of Object.keys(value)) {
      if (!visit.read.has(key)) unknown.push(`${where}/${key}`);
      else walk(value[key], `${where}/${key}`);
    }
  })(root, "");
  return { errors, unknown };
}

function validateObject(obj, where) {
  const name = `${where}: ${obj.kind}/${obj.metadata && obj.metadata.name}`;
  const Model = modelClass(obj.apiVersion, obj.kind);
  if (!check(Model, `${name}: no schema for ${obj.apiVersion} ${obj.kind}`)) {
    return;
  }
  const { errors, unknown } = validateStrict(Model, obj);
  check(errors.length === 0, `${name}: ${errors.join("; ")}`);
  check(unknown.length === 0,
        `${name}: fields the ${obj.apiVersion} ${obj.kind} schema does not ` +
        `have: ${unknown.join(", ")}`);
}

// The validator itself must catch a wrong type and a misspelt field.
function selfTest() {
  const Deployment = modelClass("apps/v1", "Deployment");
  const good = {
    apiVersion: "apps/v1", kind: "Deployment", metadata: { name: "t" },
    spec: {
      selector: { matchLabels: { a: "b" } },
      template: {
        metadata: { labels: { a: "b" } },
        spec: { containers: [{ name: "c", image: "i",
                               readinessProbe: { grpc: { port: 1 } } }] },
      },
    },
  };
  const typo = JSON.parse(JSON.stringify(good));
  typo.spec.template.spec.containers[0].readinesProbe =
    typo.spec.template.spec.containers[0].readinessProbe;
  const wrongType = JSON.parse(JSON.stringify(good));
  wrongType.spec.replicas = "3";
  const a = validateStrict(Deployment, good);
  const b = validateStrict(Deployment, typo);
  const c = validateStrict(Deployment, wrongType);
  check(a.errors.length === 0 && a.unknown.length === 0,
        `self-test: a valid Deployment fails: ${a.errors} ${a.unknown}`);
  check(b.unknown.join() === "/spec/template/spec/containers/0/readinesProbe",
        `self-test: a misspelt field is not caught (${b.unknown})`);
  check(c.errors.length === 1, "self-test: a string replicas is not caught");

  // The CRD schemas too (they load differently).
  const DestinationRule = modelClass("networking.istio.io/v1beta1",
                                     "DestinationRule");
  const rule = (outlier) => ({
    apiVersion: "networking.istio.io/v1beta1", kind: "DestinationRule",
    metadata: { name: "t" },
    spec: { host: "h", trafficPolicy: { outlierDetection: outlier } },
  });
  const d = validateStrict(DestinationRule, rule({ maxEjectionPercnt: 5 }));
  const e = validateStrict(DestinationRule, rule({ maxEjectionPercent: "x" }));
  check(d.unknown.join() ===
          "/spec/trafficPolicy/outlierDetection/maxEjectionPercnt",
        `self-test: a misspelt DestinationRule field is not caught (${d.unknown})`);
  check(e.errors.length === 1,
        "self-test: a DestinationRule field of the wrong type is not caught");
  const ServiceMonitor = modelClass("monitoring.coreos.com/v1", "ServiceMonitor");
  const f = validateStrict(ServiceMonitor, {
    apiVersion: "monitoring.coreos.com/v1", kind: "ServiceMonitor",
    metadata: { name: "t" },
    spec: { selector: {}, endpoints: [{ port: "m", intervall: "15s" }] },
  });
  check(f.unknown.join() === "/spec/endpoints/0/intervall",
        `self-test: a misspelt ServiceMonitor field is not caught (${f.unknown})`);
}

// --- Consistency ---------------------------------------------------------

function linserveFlags() {
  let out;
  try {
    out = execFileSync(linserve, ["--helpfull"], { encoding: "utf8",
                                                   stdio: "pipe" });
  } catch (e) {
    // Abseil exits 1 after printing help.
    out = (e.stdout || "") + (e.stderr || "");
  }
  const flags = new Set();
  for (const match of out.matchAll(/^\s+--([A-Za-z0-9_]+) \(/gm)) {
    flags.add(match[1]);
  }
  if (!flags.has("listen")) {
    throw new Error(`\`${linserve} --helpfull\` lists no --listen flag:\n` +
                    out.slice(0, 2000));
  }
  // The server's own default port is the one the manifests and the image
  // use.
  const listen = /^\s+--listen \([\s\S]*?\);\s+default: "([^"]*)"/m.exec(out);
  check(listen && listen[1].endsWith(`:${GRPC_PORT}`),
        `linserve's default --listen is ${listen && listen[1]}, not port ` +
        `${GRPC_PORT} (the probes', Services' and image's port)`);
  return flags;
}

// Runs `linserve --flagfile=FILE --helpfull`: Abseil parses the file (and
// reports a bad value as "ERROR: ...") before it prints the help and exits.
function flagFileError(text) {
  const dir = fs.mkdtempSync(path.join(require("os").tmpdir(), "linserve-flags-"));
  const file = path.join(dir, "linserve.flags");
  fs.writeFileSync(file, text);
  let out;
  try {
    out = execFileSync(linserve, [`--flagfile=${file}`, "--helpfull"],
                       { encoding: "utf8", stdio: "pipe" });
  } catch (e) {
    out = (e.stdout || "") + (e.stderr || "");
  } finally {
    fs.rmSync(dir, { recursive: true, force: true });
  }
  const errors = out.split("\n").filter((l) => l.startsWith("ERROR:"));
  return errors.join("; ");
}

function parseFlagFile(text) {
  const flags = new Map();
  for (const line of text.split("\n").map((l) => l.trim())) {
    if (!line || line.startsWith("#")) continue;
    const match = /^--([A-Za-z0-9_]+)(?:=(.*))?$/.exec(line);
    if (!check(match, `flag file line "${line}" is not --name=value`)) continue;
    flags.set(match[1], match[2] === undefined ? "true" : match[2]);
  }
  return flags;
}

function seconds(duration) {
  // Abseil durations: 30s, 1m30s, 500ms, 24h.
  const units = { h: 3600, m: 60, s: 1, ms: 1e-3, us: 1e-6, ns: 1e-9 };
  let total = 0;
  const re = /(\d+(?:\.\d+)?)(ms|us|ns|h|m|s)/g;
  let rest = duration;
  for (const m of duration.matchAll(re)) {
    total += Number(m[1]) * units[m[2]];
    rest = rest.replace(m[0], "");
  }
  if (rest !== "") throw new Error(`cannot read duration "${duration}"`);
  return total;
}

function labelsMatch(selector, labels) {
  return Object.entries(selector || {}).every(([k, v]) => labels[k] === v);
}

function one(objects, kind, name, where) {
  const found = objects.filter((o) => o.kind === kind &&
                                      (!name || o.metadata.name === name));
  check(found.length === 1,
        `${where}: expected one ${kind}${name ? " " + name : ""}, found ` +
        found.length);
  return found[0];
}

function checkConsistency(objects, where, knownFlags, adapterMetric) {
  const deployment = one(objects, "Deployment", "linserve", where);
  const configMap = one(objects, "ConfigMap", "linserve-flags", where);
  if (!deployment || !configMap) return;
  const pod = deployment.spec.template.spec;
  const podLabels = deployment.spec.template.metadata.labels;
  const container = pod.containers.find((c) => c.name === "linserve");
  if (!check(container, `${where}: no container "linserve"`)) return;

  // Flags: the file the container reads, and every flag linserve knows.
  const flagArgs = (container.args || []).filter((a) => a.startsWith("--flagfile="));
  check(flagArgs.length === 1,
        `${where}: the container must run with one --flagfile= argument`);
  const flagFile = flagArgs.length ? flagArgs[0].split("=")[1] : "";
  const flagsVolume = (pod.volumes || []).find(
    (v) => v.configMap && v.configMap.name === configMap.metadata.name);
  const flagsMount = flagsVolume && (container.volumeMounts || []).find(
    (m) => m.name === flagsVolume.name);
  const fileKey = flagsMount && path.posix.relative(flagsMount.mountPath, flagFile);
  check(flagsMount && configMap.data[fileKey] !== undefined,
        `${where}: --flagfile=${flagFile} is not a key of the mounted ` +
        `ConfigMap ${configMap.metadata.name}`);
  const flags = parseFlagFile(configMap.data[fileKey] || "");
  const parseError = flagFileError(configMap.data[fileKey] || "");
  check(!parseError, `${where}: linserve refuses the ConfigMap's flags: ` +
                     parseError);
  for (const name of flags.keys()) {
    check(knownFlags.has(name),
          `${where}: ConfigMap flag --${name} is not a flag of linserve ` +
          "(`linserve --helpfull`)");
  }
  for (const arg of container.args || []) {
    const name = /^--([A-Za-z0-9_]+)/.exec(arg);
    check(name && knownFlags.has(name[1]),
          `${where}: container argument ${arg} is not a flag of linserve`);
  }

  // Ports: the flags, the container ports, the probes.
  const listen = flags.get("listen") || "0.0.0.0:50051";
  check(listen === `0.0.0.0:${GRPC_PORT}`,
        `${where}: --listen=${listen}: pods must serve gRPC on 0.0.0.0:${GRPC_PORT}`);
  check(flags.get("metrics_port") === String(METRICS_PORT),
        `${where}: --metrics_port must be ${METRICS_PORT}`);
  const ports = Object.fromEntries((container.ports || []).map(
    (p) => [p.name, p.containerPort]));
  check(ports.grpc === GRPC_PORT && ports.metrics === METRICS_PORT,
        `${where}: container ports must be grpc ${GRPC_PORT} and metrics ` +
        `${METRICS_PORT}, are ${JSON.stringify(ports)}`);
  for (const probeName of ["readinessProbe", "livenessProbe", "startupProbe"]) {
    const probe = container[probeName];
    if (probeName === "startupProbe" && !probe) continue;
    check(probe && probe.grpc && probe.grpc.port === GRPC_PORT &&
          probe.grpc.service === "",
          `${where}: ${probeName} must be grpc {port: ${GRPC_PORT}, ` +
          `service: ""} (grpc.health.v1 of the whole server)`);
  }

  // Draining: preStop sleep + drain grace within the grace period; liveness
  // must not kill a draining pod.
  const preStop = container.lifecycle && container.lifecycle.preStop;
  const sleep = preStop && preStop.exec && preStop.exec.command[0] === "sleep"
    ? Number(preStop.exec.command[1]) : NaN;
  check(sleep > 0, `${where}: preStop must be exec ["sleep", N]`);
  const drain = seconds(flags.get("drain_grace") || "30s");
  check(pod.terminationGracePeriodSeconds >= sleep + drain + 10,
        `${where}: terminationGracePeriodSeconds ` +
        `${pod.terminationGracePeriodSeconds} < preStop ${sleep} s + ` +
        `--drain_grace ${drain} s + 10 s to spill sessions`);
  const live = container.livenessProbe || {};
  check((live.periodSeconds || 10) * (live.failureThreshold || 3) > drain,
        `${where}: the liveness probe would restart a pod while it drains`);

  // Spill directory: a mounted, writable volume.
  const spill = flags.get("spill_dir");
  const spillMount = (container.volumeMounts || []).find((m) => m.mountPath === spill);
  const spillVolume = spillMount && (pod.volumes || []).find(
    (v) => v.name === spillMount.name);
  check(spillVolume && !spillMount.readOnly &&
        (spillVolume.emptyDir || spillVolume.persistentVolumeClaim),
        `${where}: --spill_dir=${spill} must be a writable emptyDir or PVC mount`);

  // Security and resources.
  const sc = container.securityContext || {};
  check((sc.runAsNonRoot || (pod.securityContext || {}).runAsNonRoot) &&
        sc.readOnlyRootFilesystem === true && sc.allowPrivilegeEscalation === false,
        `${where}: container must be runAsNonRoot, readOnlyRootFilesystem, ` +
        "allowPrivilegeEscalation false");
  const res = container.resources || {};
  check(res.requests && res.requests.cpu && res.requests.memory &&
        res.limits && res.limits.memory,
        `${where}: container needs cpu and memory requests and a memory limit`);
  const threads = Number(flags.get("threads") || 0);
  check(threads > 0 && String(threads) === String(res.requests && res.requests.cpu),
        `${where}: --threads=${flags.get("threads")} should equal the cpu ` +
        `request ${res.requests && res.requests.cpu} (whole cores for OpenMP)`);

  // Services.
  const service = one(objects, "Service", "linserve", where);
  const headless = one(objects, "Service", "linserve-headless", where);
  for (const svc of [service, headless]) {
    if (!svc) continue;
    check(labelsMatch(svc.spec.selector, podLabels),
          `${where}: Service ${svc.metadata.name} selects no linserve pod`);
    for (const p of svc.spec.ports) {
      const target = typeof p.targetPort === "string" ? ports[p.targetPort]
                                                      : p.targetPort;
      check(target === p.port,
            `${where}: Service ${svc.metadata.name} port ${p.name} targets ` +
            `${p.targetPort}, not a container port ${p.port}`);
    }
    check(svc.spec.ports.some((p) => p.name === "grpc" && p.port === GRPC_PORT),
          `${where}: Service ${svc.metadata.name} needs port grpc ${GRPC_PORT} ` +
          '(Istio reads the protocol from the name)');
  }
  check(headless && headless.spec.clusterIP === "None",
        `${where}: linserve-headless must have clusterIP: None`);

  // ServiceMonitor: selects the Service (only it), scrapes its metrics port.
  const monitor = one(objects, "ServiceMonitor", "linserve", where);
  if (monitor && service) {
    check(labelsMatch(monitor.spec.selector.matchLabels, service.metadata.labels) &&
          !(headless && labelsMatch(monitor.spec.selector.matchLabels,
                                    headless.metadata.labels)),
          `${where}: the ServiceMonitor must select the linserve Service only`);
    check(monitor.spec.endpoints.every((e) =>
            service.spec.ports.some((p) => p.name === e.port && p.port === METRICS_PORT)),
          `${where}: the ServiceMonitor must scrape the Service's metrics port`);
  }

  // HPA on the Deployment, with the adapter's metric and CPU.
  const hpa = one(objects, "HorizontalPodAutoscaler", "linserve", where);
  if (hpa) {
    check(hpa.spec.scaleTargetRef.kind === "Deployment" &&
          hpa.spec.scaleTargetRef.name === deployment.metadata.name,
          `${where}: the HPA does not scale the linserve Deployment`);
    const podsMetrics = hpa.spec.metrics.filter((m) => m.type === "Pods")
      .map((m) => m.pods.metric.name);
    check(podsMetrics.includes(adapterMetric),
          `${where}: the HPA's Pods metrics ${podsMetrics} do not include ` +
          `${adapterMetric}, the metric the prometheus-adapter rule serves`);
    check(hpa.spec.metrics.some((m) => m.type === "Resource" &&
                                       m.resource.name === "cpu"),
          `${where}: the HPA has no cpu metric`);
  }

  // PodDisruptionBudget.
  const pdb = one(objects, "PodDisruptionBudget", "linserve", where);
  if (pdb) {
    check(pdb.spec.maxUnavailable === 1 &&
          labelsMatch(pdb.spec.selector.matchLabels, podLabels),
          `${where}: the PDB must be maxUnavailable 1 over the linserve pods`);
  }
}

// --- Main ----------------------------------------------------------------

function main() {
  selfTest();
  const knownFlags = linserveFlags();

  const sessionHeader =
    /kSessionMetadataKey\[\]\s*=\s*"([^"]+)"/.exec(
      fs.readFileSync(path.join(REPO, "client", "call_control.h"), "utf8"));
  check(sessionHeader, "client/call_control.h has no kSessionMetadataKey");
  const header = sessionHeader ? sessionHeader[1] : "x-linserve-session";

  // Every manifest file, as written.
  const files = [];
  (function find(dir) {
    for (const entry of fs.readdirSync(dir, { withFileTypes: true })) {
      const p = path.join(dir, entry.name);
      if (entry.isDirectory()) find(p);
      else if (/\.ya?ml$/.test(entry.name)) files.push(p);
    }
  })(K8S);
  let validated = 0;
  for (const file of files.sort()) {
    const rel = path.relative(REPO, file);
    if (path.basename(file) === "kustomization.yaml") continue;
    const docs = kustomize.loadDocuments(yaml, file);
    if (path.basename(file) === "envoy-route-example.yaml") continue;
    for (const doc of docs) {
      if (Array.isArray(doc)) continue;  // a JSON 6902 patch (overlays)
      validateObject(doc, rel);
      validated += 1;
    }
  }

  // Every base file is in the base's kustomization.
  const baseDir = path.join(K8S, "base");
  const listed = new Set(yaml.parse(fs.readFileSync(
    path.join(baseDir, "kustomization.yaml"), "utf8")).resources);
  for (const f of fs.readdirSync(baseDir)) {
    if (f !== "kustomization.yaml") {
      check(listed.has(f), `deploy/k8s/base/${f} is not in kustomization.yaml`);
    }
  }

  // The prometheus-adapter rule's metric.
  const adapter = yaml.parse(yaml.parse(fs.readFileSync(
    path.join(K8S, "prometheus-adapter", "adapter-config.yaml"), "utf8"))
    .data["config.yaml"]);
  const adapterMetric = adapter.rules[0].name.as;

  // Rendered kustomizations.
  for (const dir of ["base", path.join("overlays", "example")]) {
    const where = `kustomize build deploy/k8s/${dir}`;
    let objects;
    try {
      objects = kustomize.build(yaml, path.join(K8S, dir));
    } catch (e) {
      check(false, `${where}: ${e.message}`);
      continue;
    }
    for (const obj of objects) validateObject(obj, where);
    validated += objects.length;
    checkConsistency(objects, where, knownFlags, adapterMetric);
    if (dir !== "base") {
      check(objects.every((o) => o.kind === "Namespace" ||
                                 o.metadata.namespace === "linserve"),
            `${where}: every object must be in the overlay's namespace`);
    }
  }

  // Session-aware routing: Istio and Envoy hash the client's header.
  const rule = kustomize.loadDocuments(
    yaml, path.join(K8S, "istio-destinationrule.yaml"))[0];
  const hash = rule.spec.trafficPolicy.loadBalancer.consistentHash || {};
  check(hash.httpHeaderName === header,
        `istio-destinationrule.yaml must hash the ${header} header`);
  check(rule.spec.host === "linserve",
        "istio-destinationrule.yaml must route the linserve Service");
  const envoy = kustomize.loadDocuments(
    yaml, path.join(K8S, "envoy-route-example.yaml"))[0];
  const hcm = envoy.static_resources.listeners[0].filter_chains[0].filters[0]
    .typed_config;
  const routes = hcm.route_config.virtual_hosts.flatMap((v) => v.routes);
  check(routes.length > 0 && routes.every((r) =>
          (r.route.hash_policy || []).some((h) => h.header &&
                                                  h.header.header_name === header)),
        `envoy-route-example.yaml: every route must hash the ${header} header`);
  const cluster = envoy.static_resources.clusters.find(
    (c) => c.name === routes[0].route.cluster);
  check(cluster && ["MAGLEV", "RING_HASH"].includes(cluster.lb_policy),
        "envoy-route-example.yaml: the route's cluster must use MAGLEV or " +
        "RING_HASH (hash policies need a hashing balancer)");
  const addr = cluster && cluster.load_assignment.endpoints[0].lb_endpoints[0]
    .endpoint.address.socket_address;
  check(addr && addr.address.startsWith("linserve-headless.") &&
        addr.port_value === GRPC_PORT,
        "envoy-route-example.yaml: the cluster must resolve the headless " +
        `Service on port ${GRPC_PORT}`);
  check(cluster && (cluster.health_checks || []).some((h) => h.grpc_health_check),
        "envoy-route-example.yaml: the cluster must use gRPC health checks");

  if (problems.length) {
    console.log(`FAIL: ${problems.length} of ${checks} checks\n  ` +
                problems.join("\n  "));
    process.exit(1);
  }
  console.log(`OK: ${validated} objects validate (Kubernetes 1.27, ` +
              `prometheus-operator, Istio schemas, no unknown fields); ` +
              `${checks} checks pass; ${knownFlags.size} linserve flags known`);
}

main();
