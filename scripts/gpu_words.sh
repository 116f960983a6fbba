#!/usr/bin/env bash
# Train the words model (configs/asl-words.yaml, batch 64) on a lent GPU machine with no
# network: corpus, cache, sequence recognizer (in parallel), autoencoder + denoiser. Not yet
# run on a GPU: no GPU was lent to the session that wrote it.
# Usage (device machine, repo root): bash scripts/gpu_words.sh MINUTES STOP_AFTER_S
# Wheels for what the image lacks travel in .whl/ (diffusers, pose-format; a copy of
# spoken_to_signed with the ASL lexicon only, in .whl/s2s).
set -euo pipefail
MINUTES=${1:-6}
STOP_AFTER=${2:-480}
export PYTHONUNBUFFERED=1 TOKENIZERS_PARALLELISM=false
T0=$(date +%s)
python3 -m pip install -q --no-index --no-deps --no-compile --target /tmp/site .whl/*.whl
cp -r .whl/s2s/spoken_to_signed /tmp/site/
export PYTHONPATH=/tmp/site:$PWD/src
W=/root/work
mkdir -p "$W" "${OUT:-/tmp/out}"
OUT=${OUT:-/tmp/out}
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader
if [ ! -f "$W/data/fingerspelling.json" ]; then
  python3 -m text2sign data fingerspelling "$W/data" --words en --with-letters --frames 28 \
    --size 128 --variants 2 --workers 16
fi
python3 -m text2sign data prepare "$W/data" --frames 28 --size 128 --workers 16 --quiet
echo "corpus ready at $(( $(date +%s) - T0 )) s"
python3 - "$W" > "$OUT/recognizer.log" 2>&1 <<'PY' &
import sys, time
from pathlib import Path
from text2sign.data.dataset import open_clips
from text2sign.evaluation.sequence import (load_or_train_sequence_recognizer, read_clips,
                                           error_rate, exact_accuracy)
w = Path(sys.argv[1])
cache = open_clips(w / "data", 28, 128, progress=False)
t = time.time()
rec = load_or_train_sequence_recognizer(cache, 0.1, 0.1, device="cuda", folder=w / "recognizer",
                                        progress=False)
print("recognizer trained in", round(time.time() - t, 1), "s")
train, val, unseen = cache.split_by_text(0.1, 0.1)
for name, idx in (("val (seen texts)", val), ("unseen texts", unseen)):
    refs = [cache.texts[i] for i in idx]
    hyp = read_clips(rec, cache, idx)
    print(f"{name}: {len(idx)} clips, CER {error_rate(refs, hyp):.4f}, exact "
          f"{exact_accuracy(refs, hyp):.3f}")
PY
REC=$!
RESUME=""
[ -d "$W/run/checkpoints" ] && RESUME="--resume"
LEFT=$(( STOP_AFTER - ($(date +%s) - T0) ))
set +e
timeout --foreground -s INT "$LEFT" python3 -m text2sign train --config configs/asl-words.yaml \
  --data "$W/data" --out "$W/run" --minutes "$MINUTES" --no-progress $RESUME \
  --set train.batch_size=64 --set data.num_workers=4 --set latent.batch_size=64 2>&1 \
  | grep -v -i "warn" | tail -25
set -e
wait $REC || true
cat "$OUT/recognizer.log"
tail -3 "$W/run/log.jsonl"
echo "training done at $(( $(date +%s) - T0 )) s"
# At most 8 files of 16 MiB come back: small files in one tar, the denoiser in parts.
tar cf "$OUT/small.tar" -C "$W/run" model/config.json model/texts.txt model/autoencoder.json \
  model/autoencoder.safetensors model/text.safetensors log.jsonl -C "$W" recognizer
split -b 15M "$W/run/model/denoiser.safetensors" "$OUT/denoiser.part-"
ls -la "$OUT"
