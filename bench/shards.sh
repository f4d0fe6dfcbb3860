#!/usr/bin/env bash
# Sharded runs on one machine: one process with N threads against N shard processes
# (`--shard I/N`, one thread each) started together, on the same input. Prints wall time,
# MB/s, resources/s and each process's peak RSS, and checks that both outputs hold the same
# rows per table (from their run reports).
#
#   bash bench/shards.sh [INPUT] [N] [extra convert flags...]
#   bash bench/shards.sh bench/data/bundle-500mb 2 --view default
#
# INPUT defaults to bench/data/bundle-500mb, made by `cargo run --release --example bench --
# --size-mb 500 --data bench/data` (see README "Speed and memory").
set -euo pipefail
cd "$(dirname "$0")/.."
input=${1:-bench/data/bundle-500mb}
shards=${2:-2}
shift $(( $# > 2 ? 2 : $# ))
extra=("$@")
[ -e "$input" ] || { echo "no input $input: generate it with the bench example first" >&2; exit 2; }
cargo build --release --quiet
bin=target/release/fhir2table
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
bytes=$(du -sbL "$input" | cut -f1)

now() { date +%s.%N; }
report() { # label seconds rss-files...
  local label=$1 seconds=$2; shift 2
  local rss=""; for f in "$@"; do rss+="$(( $(cat "$f") / 1024 )) MB "; done
  python3 - "$label" "$seconds" "$bytes" "$work/$label/.fhir2table/_run.json" "$rss" <<'PY'
import json, sys
label, seconds, size, path, rss = sys.argv[1], float(sys.argv[2]), int(sys.argv[3]), sys.argv[4], sys.argv[5]
report = json.load(open(path))
resources = sum(n for t, n in report["resources"].items() if t != "Bundle")
print(f"{label:>22}: {seconds:6.2f} s  {size / seconds / 1e6:6.0f} MB/s  {resources / seconds / 1e3:6.0f}k resources/s  peak RSS {rss}")
PY
}

start=$(now)
/usr/bin/time -f %M -o "$work/rss-single" "$bin" convert --in "$input" --out "$work/single" \
  --threads "$shards" -q "${extra[@]}" || [ $? -eq 1 ]
single=$(echo "$(now) - $start" | bc)

start=$(now)
for ((i = 0; i < shards; i++)); do
  /usr/bin/time -f %M -o "$work/rss-shard-$i" "$bin" convert --in "$input" --out "$work/sharded" \
    --threads 1 --shard "$i/$shards" -q "${extra[@]}" &
done
wait
sharded=$(echo "$(now) - $start" | bc)

echo "input: $input, $(( bytes / 1000000 )) MB; $(nproc) cores; $shards threads / shards"
report single "$single" "$work/rss-single"
report sharded "$sharded" "$work"/rss-shard-*
python3 - "$work/single/.fhir2table/_run.json" "$work/sharded/.fhir2table/_run.json" <<'PY'
import json, sys
one, many = (json.load(open(p)) for p in sys.argv[1:])
rows = lambda r: {t: v["rows"] for t, v in r["tables"].items()}
sys.exit(0 if rows(one) == rows(many) else f"rows differ: {rows(one)} vs {rows(many)}")
PY
echo "same rows per table in both outputs"
