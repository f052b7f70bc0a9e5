// A small, strict subset of `kustomize build` for the deploy tests (no
// kustomize or kubectl package exists for Debian bookworm): resources (files
// and directories with a kustomization.yaml), namespace, images, replicas,
// and patches given as JSON 6902 operation lists with a kind/name target.
// A kustomization that uses anything else is refused with its field named,
// so the tests never validate something other than what kustomize renders.
// Its output for deploy/k8s was compared with `kubectl kustomize` once, by
// hand (docs/operations.md notes it).
"use strict";

const fs = require("fs");
const path = require("path");

const SUPPORTED_FIELDS = new Set([
  "apiVersion", "kind", "resources", "namespace", "images", "replicas",
  "patches",
]);

// Kinds without a namespace among those deploy/k8s may use.
const CLUSTER_SCOPED = new Set([
  "Namespace", "ClusterRole", "ClusterRoleBinding", "CustomResourceDefinition",
  "APIService", "PriorityClass", "StorageClass", "PersistentVolume",
]);

const WORKLOADS = new Set([
  "Deployment", "StatefulSet", "DaemonSet", "ReplicaSet", "Job",
]);

function loadDocuments(yaml, file) {
  return yaml
    .parseAllDocuments(fs.readFileSync(file, "utf8"))
    .map((doc) => {
      if (doc.errors.length) {
        throw new Error(`${file}: ${doc.errors.map(String).join("; ")}`);
      }
      return doc.toJS();
    })
    .filter((obj) => obj !== null && obj !== undefined);
}

function decodePointer(pointer) {
  if (pointer === "") return [];
  if (!pointer.startsWith("/")) throw new Error(`bad JSON pointer ${pointer}`);
  return pointer
    .slice(1)
    .split("/")
    .map((s) => s.replace(/~1/g, "/").replace(/~0/g, "~"));
}

// Applies one RFC 6902 operation in place.
function applyOperation(obj, op, where) {
  const keys = decodePointer(op.path);
  if (keys.length === 0) throw new Error(`${where}: cannot patch the root`);
  let parent = obj;
  for (const key of keys.slice(0, -1)) {
    if (parent === null || typeof parent !== "object" || !(key in parent)) {
      throw new Error(`${where}: path ${op.path} does not exist`);
    }
    parent = parent[key];
  }
  const last = keys[keys.length - 1];
  const isArray = Array.isArray(parent);
  const index = isArray ? (last === "-" ? parent.length : Number(last)) : null;
  switch (op.op) {
    case "add":
      if (isArray) parent.splice(index, 0, op.value);
      else parent[last] = op.value;
      break;
    case "replace":
    case "remove":
      if (isArray ? !(index < parent.length) : !(last in parent)) {
        throw new Error(`${where}: ${op.op} of missing ${op.path}`);
      }
      if (op.op === "remove") {
        if (isArray) parent.splice(index, 1);
        else delete parent[last];
      } else {
        parent[isArray ? index : last] = op.value;
      }
      break;
    case "test":
      if (JSON.stringify(parent[isArray ? index : last]) !==
          JSON.stringify(op.value)) {
        throw new Error(`${where}: test of ${op.path} failed`);
      }
      break;
    default:
      throw new Error(`${where}: operation "${op.op}" is not supported`);
  }
}

function matchesTarget(obj, target) {
  if (target.kind && obj.kind !== target.kind) return false;
  if (target.name && obj.metadata.name !== target.name) return false;
  if (target.namespace && obj.metadata.namespace !== target.namespace) {
    return false;
  }
  const [group, version] = obj.apiVersion.includes("/")
    ? obj.apiVersion.split("/")
    : ["", obj.apiVersion];
  if (target.group !== undefined && target.group !== group) return false;
  if (target.version !== undefined && target.version !== version) return false;
  return true;
}

function setImage(container, images) {
  const match = /^([^@:]+(?::\d+\/[^@:]+)?)(?::([^@]+))?(?:@(.+))?$/.exec(
    container.image);
  if (!match) return;
  const name = match[1];
  for (const image of images) {
    if (image.name !== name) continue;
    let result = image.newName || name;
    if (image.digest) result += `@${image.digest}`;
    else if (image.newTag) result += `:${image.newTag}`;
    else if (match[2]) result += `:${match[2]}`;
    container.image = result;
  }
}

// Renders the kustomization in `dir`: what `kustomize build dir` prints, as
// objects.
function build(yaml, dir) {
  const file = path.join(dir, "kustomization.yaml");
  const kustomization = yaml.parse(fs.readFileSync(file, "utf8"));
  for (const field of Object.keys(kustomization)) {
    if (!SUPPORTED_FIELDS.has(field)) {
      throw new Error(
        `${file}: field "${field}" is outside the kustomize subset of ` +
        "tests/deploy/kustomize_lite.js; extend it (and compare with " +
        "`kubectl kustomize`)");
    }
  }
  let objects = [];
  for (const resource of kustomization.resources || []) {
    const resolved = path.resolve(dir, resource);
    if (fs.statSync(resolved).isDirectory()) {
      objects = objects.concat(build(yaml, resolved));
    } else {
      objects = objects.concat(loadDocuments(yaml, resolved));
    }
  }
  if (kustomization.namespace) {
    for (const obj of objects) {
      if (!CLUSTER_SCOPED.has(obj.kind)) {
        obj.metadata.namespace = kustomization.namespace;
      }
    }
  }
  for (const obj of objects) {
    if (!WORKLOADS.has(obj.kind)) continue;
    const pod = obj.spec.template.spec;
    for (const c of [...(pod.containers || []), ...(pod.initContainers || [])]) {
      setImage(c, kustomization.images || []);
    }
  }
  for (const replicas of kustomization.replicas || []) {
    const targets = objects.filter(
      (o) => WORKLOADS.has(o.kind) && o.metadata.name === replicas.name);
    if (targets.length === 0) {
      throw new Error(`${file}: replicas names no workload "${replicas.name}"`);
    }
    for (const t of targets) t.spec.replicas = replicas.count;
  }
  for (const patch of kustomization.patches || []) {
    const where = `${file}: patch ${patch.path || "(inline)"}`;
    const operations = patch.path
      ? yaml.parse(fs.readFileSync(path.resolve(dir, patch.path), "utf8"))
      : yaml.parse(patch.patch);
    if (!Array.isArray(operations) || !patch.target) {
      throw new Error(
        `${where}: only JSON 6902 patches (a list of operations) with a ` +
        "target are in the kustomize subset of tests/deploy/kustomize_lite.js");
    }
    const targets = objects.filter((o) => matchesTarget(o, patch.target));
    if (targets.length === 0) {
      throw new Error(`${where}: target ${JSON.stringify(patch.target)} ` +
                      "matches no resource");
    }
    for (const t of targets) {
      for (const op of operations) applyOperation(t, op, where);
    }
  }
  return objects;
}

module.exports = { build, loadDocuments };
