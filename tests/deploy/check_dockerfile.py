#!/usr/bin/python3
"""ctest: the Dockerfile builds with the scripts CI runs, and its runtime
stage installs every shared library the binaries need. No Docker engine runs
here, so this reads the Dockerfile and compares it with what CI and the
built binaries really use:

  1. The build stage's RUN steps are exactly `bash scripts/install-deps.sh`
     and then `bash scripts/build.sh ...`, the scripts that .ci/run runs (via
     scripts/test.sh).
  2. The runtime stage installs packages only through
     `LINSERVE_DEPS=runtime bash install-deps.sh`, copies linserve,
     linserve-cli and models/default, runs as a non-root user, exposes the
     gRPC and metrics ports, has a HEALTHCHECK with `linserve-cli health` and
     linserve as its ENTRYPOINT, whose CMD flags linserve accepts.
  3. For every shared library `ldd` lists for the built binaries, the Debian
     package that owns it (`dpkg -S`) is in install-deps.sh's runtime list,
     is installed with it (its Depends, recursively, as apt would), or is in
     debian:bookworm itself (priority "required" or Essential packages).

  check_dockerfile.py [--sanitized] LINSERVE LINSERVE_CLI
--sanitized: the binaries come from a LINSERVE_SANITIZE build, whose
sanitizer runtimes (libasan, libubsan, libtsan) the image, built without
sanitizers, does not need; they are left out. Exits 1 listing every problem (for 3: the libraries and their packages that
the runtime list misses).
"""

import json
import os
import re
import shlex
import subprocess
import sys

REPO = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", ".."))
GRPC_PORT = "50051"
METRICS_PORT = "9464"


def read(path):
    with open(os.path.join(REPO, path)) as f:
        return f.read()


def dockerfile_instructions(text):
    """[(stage_name, INSTRUCTION, arguments)] with continuations joined and
    comments dropped."""
    logical, current = [], ""
    for line in text.splitlines():
        stripped = line.strip()
        if not current and (not stripped or stripped.startswith("#")):
            continue
        if current and stripped.startswith("#"):
            continue  # a comment inside a continued instruction
        if stripped.endswith("\\"):
            current += stripped[:-1] + " "
            continue
        logical.append(current + stripped)
        current = ""
    if current:
        logical.append(current)
    out, stage = [], None
    for line in logical:
        instruction, _, args = line.partition(" ")
        instruction = instruction.upper()
        args = args.strip()
        if instruction == "FROM":
            match = re.match(r"(\S+)(?:\s+AS\s+(\S+))?$", args, re.I)
            stage = match.group(2) or match.group(1)
            out.append((stage, "FROM", match.group(1)))
            continue
        out.append((stage, instruction, args))
    return out


def command_words(args):
    """A RUN / CMD argument list: JSON form or shell form, as words."""
    if args.startswith("["):
        return json.loads(args)
    return shlex.split(args)


def without_env_prefix(words):
    """Drops leading VAR=value assignments."""
    i = 0
    while i < len(words) and re.match(r"^[A-Za-z_][A-Za-z0-9_]*=", words[i]):
        i += 1
    return words[:i], words[i:]


def split_commands(args):
    """Shell-form RUN text split at && into word lists."""
    return [shlex.split(part) for part in re.split(r"&&", args) if part.strip()]


def ci_scripts(problems):
    """The install and build commands CI runs: .ci/run -> scripts/test.sh."""
    ci = read(".ci/run")
    if "bash scripts/test.sh" not in ci:
        problems.append(".ci/run no longer runs `bash scripts/test.sh`; update "
                        "this test to what CI runs")
    test_sh = read("scripts/test.sh")
    for script in ("scripts/install-deps.sh", "scripts/build.sh"):
        if not re.search(r"^\s*bash " + re.escape(script) + r"\s*$", test_sh,
                         re.M):
            problems.append("scripts/test.sh (what CI runs) does not run "
                            "`bash %s`" % script)


def check_build_stage(instructions, problems):
    runs = [args for stage, ins, args in instructions
            if stage == "build" and ins == "RUN"]
    if not runs:
        problems.append('no stage "build" with RUN steps')
        return
    seen = []
    for args in runs:
        for words in split_commands(args):
            _, command = without_env_prefix(words)
            if command[:2] == ["bash", "scripts/install-deps.sh"] and len(
                    command) == 2:
                seen.append("install-deps")
            elif command[:2] == ["bash", "scripts/build.sh"]:
                seen.append("build")
            else:
                problems.append("build stage runs `%s`: only `bash "
                                "scripts/install-deps.sh` and `bash "
                                "scripts/build.sh ...` (what CI runs) may "
                                "install or build" % " ".join(words))
    if seen != ["install-deps", "build"]:
        problems.append("build stage must run `bash scripts/install-deps.sh` "
                        "then `bash scripts/build.sh`, once each; it runs %s" %
                        seen)
    copies = [args for stage, ins, args in instructions
              if stage == "build" and ins == "COPY"]
    if not any(re.fullmatch(r"scripts/install-deps\.sh\s+\S+", c) for c in copies):
        problems.append("build stage does not COPY scripts/install-deps.sh")


def check_runtime_stage(instructions, problems):
    stages = [args for _, ins, args in instructions if ins == "FROM"]
    if not stages or any(base != "debian:bookworm" for base in stages):
        problems.append("every stage must be FROM debian:bookworm, got %s" %
                        stages)
    final = instructions[-1][0]
    runtime = [(ins, args) for stage, ins, args in instructions
               if stage == final]
    installs = 0
    for ins, args in runtime:
        if ins != "RUN":
            continue
        for words in split_commands(args):
            env, command = without_env_prefix(words)
            if command[:1] == ["bash"] and command[1:2] and command[1].endswith(
                    "install-deps.sh"):
                if "LINSERVE_DEPS=runtime" not in env:
                    problems.append("runtime stage runs install-deps.sh "
                                    "without LINSERVE_DEPS=runtime")
                installs += 1
            elif command[:1] in (["apt-get"], ["apt"], ["dpkg"]) and any(
                    w in ("install", "-i") for w in command):
                problems.append("runtime stage installs packages outside "
                                "install-deps.sh: `%s`" % " ".join(words))
    if installs != 1:
        problems.append("runtime stage must run `LINSERVE_DEPS=runtime bash "
                        "install-deps.sh` once (runs it %d times)" % installs)
    if not any(ins == "COPY" and re.fullmatch(
            r"scripts/install-deps\.sh\s+\S+", args) for ins, args in runtime):
        problems.append("runtime stage does not COPY scripts/install-deps.sh")
    copied = " ".join(args for ins, args in runtime if ins == "COPY")
    for needed in (r"--from=build \S+/server/linserve ",
                   r"--from=build \S+/client/linserve-cli ",
                   r"(^| )models/default "):
        if not re.search(needed, copied):
            problems.append("runtime stage does not COPY %s" %
                            needed.replace("\\S+", "...").replace("(^| )", ""))
    user = [args for ins, args in runtime if ins == "USER"]
    if not user or user[-1].split(":")[0] in ("root", "0"):
        problems.append("runtime stage must end as a non-root USER, has %s" %
                        user)
    exposed = set(" ".join(a for i, a in runtime if i == "EXPOSE").split())
    for port in (GRPC_PORT, METRICS_PORT):
        if port not in exposed and port + "/tcp" not in exposed:
            problems.append("runtime stage does not EXPOSE %s" % port)
    health = [args for ins, args in runtime if ins == "HEALTHCHECK"]
    if not health or not re.search(r"linserve-cli\W+health", health[-1]):
        problems.append("no HEALTHCHECK running `linserve-cli health`")
    elif GRPC_PORT not in health[-1]:
        problems.append("HEALTHCHECK does not check port %s" % GRPC_PORT)
    entry = [args for ins, args in runtime if ins == "ENTRYPOINT"]
    if not entry or command_words(entry[-1])[:1] not in (
            ["linserve"], ["/usr/local/bin/linserve"]):
        problems.append("ENTRYPOINT must be linserve, is %s" % entry)
    cmd = " ".join(args for ins, args in runtime if ins == "CMD")
    for flag in ("--listen=0.0.0.0:" + GRPC_PORT,
                 "--metrics_port=" + METRICS_PORT):
        if flag not in cmd:
            problems.append("CMD does not pass %s" % flag)


def check_cmd_flags(instructions, linserve, problems):
    """linserve accepts the image's default arguments (CMD): Abseil reports
    an unknown flag or a bad value as "ERROR: ..." before --helpfull's
    output."""
    final = instructions[-1][0]
    cmds = [args for stage, ins, args in instructions
            if stage == final and ins == "CMD"]
    if not cmds:
        return
    result = subprocess.run([linserve] + command_words(cmds[-1]) +
                            ["--helpfull"], capture_output=True, text=True)
    errors = [l for l in (result.stdout + result.stderr).splitlines()
              if l.startswith("ERROR:")]
    if errors:
        problems.append("linserve refuses the image's CMD %s: %s" %
                        (cmds[-1], "; ".join(errors)))


def runtime_packages():
    text = read("scripts/install-deps.sh")
    match = re.search(r"^runtime_packages=\((.*?)^\)", text, re.S | re.M)
    if not match:
        raise SystemExit("FAIL: scripts/install-deps.sh has no "
                         "runtime_packages=( ... ) list")
    body = re.sub(r"#.*", "", match.group(1))
    return body.split()


def installed_packages():
    """{name: (depends, provides, base)} of every installed package."""
    out = subprocess.run(
        ["dpkg-query", "-W", "-f",
         "${Package}\t${db:Status-Abbrev}\t${Priority}\t${Essential}\t"
         "${Pre-Depends}\t${Depends}\t${Provides}\n"],
        capture_output=True, text=True, check=True).stdout
    packages = {}
    for line in out.splitlines():
        name, status, priority, essential, pre, dep, provides = line.split("\t")
        if not status.startswith("ii"):
            continue
        alternatives = []  # each a list of acceptable package names
        for field in (pre, dep):
            for clause in filter(None, (c.strip() for c in field.split(","))):
                alternatives.append([
                    re.split(r"[\s(:]", alt.strip())[0]
                    for alt in clause.split("|")
                ])
        provided = [re.split(r"[\s(:]", p.strip())[0]
                    for p in provides.split(",") if p.strip()]
        packages[name] = (alternatives, provided,
                          priority == "required" or essential == "yes")
    return packages


def dependency_closure(roots, packages):
    providers = {}
    for name, (_, provided, _) in packages.items():
        for p in provided:
            providers.setdefault(p, []).append(name)
    closure, todo = set(), list(roots)
    while todo:
        name = todo.pop()
        if name in closure:
            continue
        closure.add(name)
        for alternatives in packages.get(name, ([], [], False))[0]:
            # apt takes the first alternative it can; here: one installed.
            for alt in alternatives:
                candidates = [alt] if alt in packages else providers.get(alt, [])
                if candidates:
                    todo.extend(candidates[:1])
                    break
    return closure


def shared_libraries(binary, problems):
    result = subprocess.run(["ldd", binary], capture_output=True, text=True)
    if result.returncode != 0:
        problems.append("ldd %s failed: %s" % (binary, result.stderr.strip()))
        return []
    libs = []
    for line in result.stdout.splitlines():
        line = line.strip()
        if "not found" in line:
            problems.append("%s: %s" % (binary, line))
        match = re.search(r"(/\S+)\s+\(0x", line)
        if match:
            libs.append(match.group(1))
    return libs


def path_variants(path):
    """The path as ldd prints it, resolved, and with or without /usr (dpkg
    records one of them on a merged-/usr system)."""
    variants = [path, os.path.realpath(path)]
    for p in list(variants):
        if p.startswith("/lib"):
            variants.append("/usr" + p)
        elif p.startswith("/usr/lib"):
            variants.append(p[len("/usr"):])
    return variants


def owning_packages(paths):
    """{path: package} for the paths a Debian package owns (one `dpkg -S`
    for all of them)."""
    variants = {v: p for p in paths for v in path_variants(p)}
    result = subprocess.run(["dpkg", "-S"] + sorted(variants),
                            capture_output=True, text=True)
    owners = {}
    for line in result.stdout.splitlines():
        # "libfoo1:amd64: /path" (or "pkg1, pkg2: /path"); diversions aside.
        if line.startswith("diversion "):
            continue
        packages, _, owned = line.rpartition(": ")
        if owned in variants:
            owners.setdefault(variants[owned],
                              packages.split(",")[0].split(":")[0].strip())
    return owners


SANITIZER_RUNTIME = re.compile(r"^lib(asan|ubsan|tsan|lsan)\d*$")


def check_libraries(binaries, problems, sanitized=False):
    wanted = runtime_packages()
    packages = installed_packages()
    not_here = [p for p in wanted if p not in packages]
    if not_here:
        problems.append("runtime packages not installed on this machine, so "
                        "their libraries cannot be checked: %s (run "
                        "LINSERVE_DEPS=runtime bash scripts/install-deps.sh)"
                        % " ".join(not_here))
    closure = dependency_closure(wanted, packages)
    base = {name for name, (_, _, is_base) in packages.items() if is_base}
    missing = {}
    libraries = {b: shared_libraries(b, problems) for b in binaries}
    owners = owning_packages({lib for libs in libraries.values() for lib in libs})
    for binary in binaries:
        for lib in libraries[binary]:
            package = owners.get(lib)
            if package is None:
                problems.append("%s needs %s, which no Debian package owns "
                                "(built by hand? the image would lack it)" %
                                (binary, lib))
            elif sanitized and SANITIZER_RUNTIME.match(package):
                continue
            elif package not in closure and package not in base:
                missing.setdefault(package, set()).add(os.path.basename(lib))
    for package, libs in sorted(missing.items()):
        problems.append("runtime stage lacks package %s (for %s): add it to "
                        "runtime_packages in scripts/install-deps.sh" %
                        (package, ", ".join(sorted(libs))))
    return wanted, closure


def main():
    args = sys.argv[1:]
    sanitized = "--sanitized" in args
    binaries = [a for a in args if a != "--sanitized"]
    if len(binaries) != 2:
        print(__doc__)
        return 2
    problems = []
    instructions = dockerfile_instructions(read("Dockerfile"))
    ci_scripts(problems)
    check_build_stage(instructions, problems)
    check_runtime_stage(instructions, problems)
    check_cmd_flags(instructions, binaries[0], problems)
    wanted, closure = check_libraries(binaries, problems, sanitized)
    if problems:
        print("FAIL: Dockerfile\n  " + "\n  ".join(problems))
        return 1
    print("OK: build stage = CI's scripts; runtime stage installs %d packages "
          "(%d with their dependencies), which provide every library of %s" %
          (len(wanted), len(closure), ", ".join(binaries)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
