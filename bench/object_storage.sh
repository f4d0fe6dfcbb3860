#!/usr/bin/env bash
# Object storage next to local disk: the same conversion read from and written to an
# S3-protocol server on 127.0.0.1 (moto's server from PyPI, in a venv under target/), against
# local disk. Prints wall time, MB/s of input and peak RSS for each direction, and checks that
# every output holds the same rows per table (from the run reports).
#
#   bash bench/object_storage.sh [INPUT] [extra convert flags...]
#   bash bench/object_storage.sh bench/data/bundle-500mb --threads 2
#
# INPUT defaults to bench/data/bundle-500mb (see README "Speed and memory" for making it). The
# server keeps objects in memory: give the machine twice the input's size in free RAM.
#
# moto is written in Python and serves about 100 MB/s of GETs here whatever the client, which
# bounds every S3 reading number. With S3S_FS=path/to/s3s-fs (`cargo install s3s-fs@0.14.1
# --features binary`, an S3 server in Rust over a local folder) that server is used instead.
set -euo pipefail
cd "$(dirname "$0")/.."
input=${1:-bench/data/bundle-500mb}
shift $(( $# > 0 ? 1 : 0 ))
extra=("$@")
[ -e "$input" ] || { echo "no input $input: generate it with the bench example first" >&2; exit 2; }
cargo build --release --quiet
bin=$PWD/target/release/fhir2table
venv=target/tmp/bench-s3-venv
if [ ! -x "$venv/bin/moto_server" ]; then
  python3 -m venv "$venv"
  "$venv/bin/pip" install --quiet --disable-pip-version-check 'moto[server]==5.2.5'
fi
work=$(mktemp -d)
if [ -n "${S3S_FS:-}" ]; then
  name=s3s-fs
  port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
  mkdir "$work/s3data"
  "$S3S_FS" --host 127.0.0.1 --port "$port" --access-key bench --secret-key bench "$work/s3data" 2> "$work/server.log" &
  server=$!
  sleep 1
else
  name=moto
  "$venv/bin/moto_server" -H 127.0.0.1 -p 0 2> "$work/server.log" &
  server=$!
  for _ in $(seq 50); do grep -q "Running on" "$work/server.log" && break; sleep 0.2; done
  port=$(sed -n 's/.*Running on http:\/\/127.0.0.1:\([0-9]*\).*/\1/p' "$work/server.log" | head -1)
fi
trap 'kill $server 2>/dev/null; rm -rf "$work"' EXIT
export AWS_ENDPOINT_URL=http://127.0.0.1:$port AWS_ACCESS_KEY_ID=bench AWS_SECRET_ACCESS_KEY=bench
export AWS_REGION=us-east-1 AWS_ALLOW_HTTP=true
"$venv/bin/python" - "$input" <<'PY'
import os, sys, boto3
s3 = boto3.client("s3", endpoint_url=os.environ["AWS_ENDPOINT_URL"])
s3.create_bucket(Bucket="bench")
root = sys.argv[1]
for folder, _, files in os.walk(root, followlinks=True):
    for name in files:
        path = os.path.join(folder, name)
        s3.upload_file(path, "bench", "in/" + os.path.relpath(path, root))
PY
bytes=$(du -sbL "$input" | cut -f1)
echo "input: $input, $(( bytes / 1000000 )) MB; $(nproc) cores; server: $name on port $port"

run() { # label --in --out
  local label=$1 from=$2 to=$3 start end
  start=$(date +%s.%N)
  /usr/bin/time -f %M -o "$work/rss" "$bin" convert --in "$from" --out "$to" -q "${extra[@]}" || [ $? -eq 1 ]
  end=$(date +%s.%N)
  python3 -c "import sys; s=float(sys.argv[2]); print(f'{sys.argv[1]:>26}: {s:6.2f} s {int(sys.argv[3])/s/1e6:6.0f} MB/s  peak RSS {int(sys.argv[4])//1024} MB')" \
    "$label" "$(echo "$end - $start" | bc)" "$bytes" "$(cat "$work/rss")"
}
run "local disk -> local disk" "$input" "$work/local"
run "S3 -> local disk" "s3://bench/in" "$work/from-s3"
run "local disk -> S3" "$input" "s3://bench/out"
run "S3 -> S3" "s3://bench/in" "s3://bench/out2"
"$venv/bin/python" - "$work/local/.fhir2table/_run.json" "$work/from-s3/.fhir2table/_run.json" <<'PY'
import json, os, sys, boto3
s3 = boto3.client("s3", endpoint_url=os.environ["AWS_ENDPOINT_URL"])
reports = [json.load(open(p)) for p in sys.argv[1:]]
for key in ["out/.fhir2table/_run.json", "out2/.fhir2table/_run.json"]:
    reports.append(json.loads(s3.get_object(Bucket="bench", Key=key)["Body"].read()))
rows = [{t: v["rows"] for t, v in r["tables"].items()} for r in reports]
sys.exit(0 if all(r == rows[0] for r in rows) else f"rows differ: {rows}")
PY
echo "same rows per table in all four outputs"
