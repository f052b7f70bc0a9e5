#!/usr/bin/env bash
# The serving figures of issue 4 §8 the way an operator takes them: a real
# `linserve` on loopback, loaded by `linserve-cli bench`, in one run.
#
#   stream   one Generate stream (256 tokens per request, greedy, EOS ignored)
#            against the engine in-process (engine_bench's DecodeStep at B = 1
#            on the same model and thread count): goal >= 0.9
#   chats    aggregate tokens/s of 32 chat streams against 1: goal >= 8x
#   latency  p50/p99 inter-token latency of 16 chat streams alone, then beside
#            one stream ingesting 1,000,000-token documents: goal p99 <= 3x
#
# bench/serving_bench measures the same things (and GetSession against a bare
# gRPC echo) with the client library in one process; this script is the
# cross-check through the CLI. Usage, from the repository root after
# scripts/build.sh:
#
#   bash bench/serving_cli_bench.sh            # ~2 minutes
#   SECONDS_PER_RUN=5 bash bench/serving_cli_bench.sh
#
# Environment: BUILD_DIR (build), MODEL (models/default), PORT (50571),
# SECONDS_PER_RUN (15), INGEST_TOKENS (1000000; linserve-cli bench waits for
# the calls in flight when its time is up, so with a 340M model on a CPU,
# where a 1M-token ingest takes minutes, pass fewer), SERVER_FLAGS (more
# linserve flags, e.g. "--threads 15"; the engine baseline keeps
# OMP_NUM_THREADS).
set -euo pipefail

BUILD_DIR=${BUILD_DIR:-build}
MODEL=${MODEL:-models/default}
PORT=${PORT:-50571}
SECONDS_PER_RUN=${SECONDS_PER_RUN:-15}
INGEST_TOKENS=${INGEST_TOKENS:-1000000}
ADDRESS=127.0.0.1:${PORT}
# Chat needs the model's tokenizer (its turns are text); a checkpoint with
# token ids only (tools/reference/make_random_checkpoint.py) runs the chat
# parts as Generate streams of the same length.
CHAT=chat
[ -f "${MODEL}/tokenizer.model" ] || CHAT=generate
CLI=${BUILD_DIR}/client/linserve-cli
WORK=$(mktemp -d)

# shellcheck disable=SC2086  # SERVER_FLAGS is a list of flags.
"${BUILD_DIR}/server/linserve" --model "${MODEL}" --listen "${ADDRESS}" \
  --metrics_port 0 --spill_dir "${WORK}/spill" ${SERVER_FLAGS:-} \
  >"${WORK}/server.log" 2>&1 &
SERVER=$!
trap 'kill ${SERVER} 2>/dev/null; wait ${SERVER} 2>/dev/null; rm -rf "${WORK}"' EXIT
for _ in $(seq 100); do
  "${CLI}" health --address "${ADDRESS}" >/dev/null 2>&1 && break
  sleep 0.1
done
"${CLI}" health --address "${ADDRESS}" >/dev/null

bench() {  # name, then linserve-cli bench flags
  local name=$1
  shift
  if ! "${CLI}" bench --address "${ADDRESS}" --json --seed 1 \
    --duration "${SECONDS_PER_RUN}" "$@" >"${WORK}/${name}.json" \
    2>"${WORK}/${name}.err"; then
    echo "linserve-cli bench ($name: $*) failed:" >&2
    cat "${WORK}/${name}.err" "${WORK}/${name}.json" >&2
    echo "server log (last lines):" >&2
    tail -n 20 "${WORK}/server.log" >&2
    exit 1
  fi
}

echo "linserve-cli bench against ${ADDRESS}, model ${MODEL}, ${SECONDS_PER_RUN} s per run${SERVER_FLAGS:+, server flags: ${SERVER_FLAGS}}"
"${BUILD_DIR}/bench/engine_bench" --model "${MODEL}" --prefill-tokens "" \
  --batches 1 --rss-tokens 1000 --json "${WORK}/engine.json" >/dev/null
bench stream --concurrency 1 --mix generate=1 --max_tokens 256 --prompt_tokens 16
bench chat1 --concurrency 1 --mix "${CHAT}=1" --max_tokens 64
bench chat32 --concurrency 32 --mix "${CHAT}=1" --max_tokens 64
bench chat16 --concurrency 16 --mix "${CHAT}=1" --max_tokens 64
bench chat16_ingest --concurrency 17 --mix "${CHAT}=16,ingest=1" \
  --max_tokens 64 --ingest_tokens "${INGEST_TOKENS}"

/usr/bin/env python3 - "${WORK}" "${CHAT}" "${INGEST_TOKENS}" <<'EOF'
import json, sys
work, chat = sys.argv[1], sys.argv[2]
load = lambda name: json.load(open(f"{work}/{name}.json"))
engine = load("engine")["decode"][0]["tokens_per_s"]
stream = load("stream")["kinds"]["generate"]
chat1 = load("chat1")["kinds"][chat]
chat32 = load("chat32")["kinds"][chat]
alone = load("chat16")["kinds"][chat]["inter_token_ms"]
beside_run = load("chat16_ingest")["kinds"]
beside = beside_run[chat]["inter_token_ms"]
ingest = beside_run.get("ingest", {}).get("ingested_tokens_per_s", 0.0)
# Time to first token excluded: a stream's rate is its inter-token rate.
stream_rate = 1e3 / stream["inter_token_ms"]["mean"]
print(f"  stream: {stream_rate:9.1f} tokens/s through gRPC (1e3 / mean inter-token ms;"
      f" {stream['generated_tokens_per_s']:.1f} with TTFT and call set-up)")
print(f"          {engine:9.1f} tokens/s engine in-process (DecodeStep, B = 1)")
print(f"          ratio {stream_rate / engine:.3f}  (goal >= 0.9)")
print(f"  {chat}s ({'chat turns' if chat == 'chat' else 'no tokenizer: Generate streams'}):")
print(f"          1 stream {chat1['generated_tokens_per_s']:.1f} tokens/s, 32 streams "
      f"{chat32['generated_tokens_per_s']:.1f}: {chat32['generated_tokens_per_s'] / chat1['generated_tokens_per_s']:.2f}x  (goal >= 8x)")
print(f"  latency of 16 {chat} streams, inter-token: alone p50 {alone['p50']:.2f} ms p99 {alone['p99']:.2f} ms;"
      f" beside {int(sys.argv[3]):,}-token ingests p50 {beside['p50']:.2f} ms p99 {beside['p99']:.2f} ms"
      f" ({ingest:.0f} ingested tokens/s)")
print(f"          p99 ratio {beside['p99'] / alone['p99']:.2f}x  (goal <= 3x)")
EOF
