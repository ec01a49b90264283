#!/usr/bin/env bash
# The demo: synthetic hand-clap sources -> checked 4-second clips -> shards, manifest, report.
# Usage: scripts/demo.sh VENV_BIN WORK_DIR
set -euo pipefail
BIN=${1:-.venv/bin}
WORK=${2:-demo}
mkdir -p "$WORK"
cd "$WORK"
"$BIN/s2vdata" synth --target hand --count 8 --seed 0
"$BIN/s2vdata" build --target hand --jobs 2
"$BIN/s2vdata" verify --target hand
"$BIN/s2vdata" report --target hand || echo "(report not available)"
echo
echo "clips:    $(pwd)/data/shards/hand/"
echo "manifest: $(pwd)/manifests/hand.csv ($(($(wc -l < manifests/hand.csv) - 1)) clips)"
echo "rejects:  $(pwd)/manifests/hand.rejects.csv"
echo "report:   $(pwd)/manifests/hand.report.html"
echo
echo "next: train the tiny model on these clips and make a video from a picture and a sound:"
echo "  $BIN/s2vmodel train $(pwd)/manifests/hand.csv --preset tiny --out $(pwd)/runs/tiny"
echo "  $BIN/s2vmodel generate --checkpoint $(pwd)/runs/tiny/checkpoints/latest.pt --image IMAGE.png --audio SOUND.wav --out out.mp4"
