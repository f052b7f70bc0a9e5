#!/usr/bin/env python3
"""The `linserve` binary end to end through SIGTERM (issue 4 §2).

Starts the real binary with a spill directory, ingests a text into a session
with linserve-cli, forks it and lets the fork generate (greedy) what the
session should say next, then sends SIGTERM: the server must exit 0 within
the drain grace and leave the session in the spill directory. Started again
on the same directory it must continue the session exactly: the same greedy
continuation, at the same position.

usage: check_sigterm_drain.py LINSERVE LINSERVE_CLI MODEL_DIR
"""
import json
import os
import re
import signal
import subprocess
import sys
import tempfile
import time


def start_server(linserve, model, spill_dir):
    proc = subprocess.Popen(
        [linserve, "--model", model, "--listen", "127.0.0.1:0",
         "--spill_dir", spill_dir, "--drain_grace", "5s", "--threads", "1"],
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    deadline = time.time() + 30
    while time.time() < deadline:
        line = proc.stdout.readline()
        if not line:
            break
        match = re.search(r"serving on (127\.0\.0\.1:\d+)", line)
        if match:
            return proc, match.group(1)
    proc.kill()
    sys.exit(f"linserve did not report its address; output: {line!r}")


def cli(cli_path, address, *args):
    result = subprocess.run([cli_path, *args, "--address", address],
                            capture_output=True, text=True, timeout=60)
    if result.returncode != 0:
        sys.exit(f"linserve-cli {' '.join(args)} failed "
                 f"({result.returncode}): {result.stderr}")
    return result.stdout


def greedy(cli_path, address, session):
    out = cli(cli_path, address, "generate", "--session", session,
              "--temperature", "0", "--max_tokens", "12", "--ignore_eos",
              "--json", "")
    output = json.loads(out)["output"]
    if len(output.get("token_ids", [])) != 12 or not output.get("text"):
        sys.exit(f"generate --json gave no 12 tokens and text: {out}")
    return output


def stop(proc):
    proc.send_signal(signal.SIGTERM)
    try:
        rest, _ = proc.communicate(timeout=20)
    except subprocess.TimeoutExpired:
        proc.kill()
        sys.exit("linserve did not exit within 20 s of SIGTERM")
    return proc.returncode, rest


def main():
    linserve, cli_path, model = sys.argv[1:4]
    with tempfile.TemporaryDirectory() as tmp:
        spill = os.path.join(tmp, "spill")
        text = os.path.join(tmp, "doc.txt")
        with open(text, "w") as f:
            f.write("In the beginning God created the heaven and the earth. "
                    "And the earth was without form, and void; and darkness "
                    "was upon the face of the deep.\n")

        proc, address = start_server(linserve, model, spill)
        cli(cli_path, address, "sessions", "create", "doc")
        cli(cli_path, address, "ingest", text, "--session", "doc", "--quiet")
        before = json.loads(cli(cli_path, address, "sessions", "get", "doc",
                                "--json"))
        cli(cli_path, address, "sessions", "fork", "doc", "probe")
        want = greedy(cli_path, address, "probe")
        cli(cli_path, address, "sessions", "delete", "probe")

        code, output = stop(proc)
        if code != 0:
            sys.exit(f"linserve exited {code} after SIGTERM, not 0:\n{output}")
        files = sorted(os.listdir(spill))
        if not any(name.startswith("doc.") for name in files):
            sys.exit(f"session 'doc' is not in the spill directory: {files}")

        proc, address = start_server(linserve, model, spill)
        try:
            after = json.loads(cli(cli_path, address, "sessions", "get", "doc",
                                   "--json"))
            if after.get("position") != before.get("position"):
                sys.exit(f"position {after.get('position')} after the "
                         f"restart, {before.get('position')} before")
            got = greedy(cli_path, address, "doc")
        finally:
            code, _ = stop(proc)
        for key in ("text", "token_ids"):
            if got[key] != want[key]:
                sys.exit(f"the restarted session continues differently: "
                         f"{key} {got.get(key)!r}, want {want.get(key)!r}")
        if code != 0:
            sys.exit(f"second linserve exited {code} after SIGTERM")
    print(f"ok: drained to {len(files)} spill file(s), restarted, continued "
          f"identically ({want.get('text', '')!r})")


if __name__ == "__main__":
    main()
