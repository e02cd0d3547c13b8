#!/usr/bin/env bash
# The offline learning proof and the shipped `demo` model.
#
#   (a) synthesise soundscapes from ../shared/soundscapes: a quarter of every class's recording groups (and of
#       the backgrounds) is held out for the test soundscapes; training and validation soundscapes mix the
#       other groups (validation: new mixtures, used to pick the post-processing)
#   (b) train frame_mn06 from random initialisation on them (no pretrained weights exist offline)
#   (c) evaluate it with `ptsed evaluate`: on the held-out test soundscapes at evaluate's defaults (the figure
#       an outside check measures), and on the validation soundscapes next to the same model before training
#   (d) export it as the demo model (fp16 weights) with its training-data attribution
#
# Usage (from the repository root):
#   bash recipes/demo_train.sh                      # full run, about an hour on a shared 2-core CPU
#   SOURCES=../shared/soundscapes OUT=out/demo EPOCHS=26 THREADS=1 bash recipes/demo_train.sh
#   INSTALL=1 bash recipes/demo_train.sh            # also copy the result into src/ptsed/assets/demo/
set -euo pipefail

SOURCES=${SOURCES:-../shared/soundscapes}
OUT=${OUT:-out/demo}
TRAIN_CLIPS=${TRAIN_CLIPS:-6000}  # many mixtures of the same source clips (costs generation time only)
VAL_CLIPS=${VAL_CLIPS:-150}
TEST_CLIPS=${TEST_CLIPS:-200}     # from the held-out recording groups
EPOCHS=${EPOCHS:-26}
WINDOW=${WINDOW:-4}           # training crops in seconds (the model still infers on 10 s windows)
EPOCH_LEN=${EPOCH_LEN:-1600}  # random crops per epoch (100 optimiser steps)
VAL_EVERY=${VAL_EVERY:-13}
BATCH=${BATCH:-16}
THREADS=${THREADS:-1}        # one torch thread per process is fastest on a small shared machine
SEED=${SEED:-0}
INSTALL=${INSTALL:-0}

start=$(date +%s)
echo "== (a) soundscapes -> $OUT/data"
python recipes/demo_data.py "$SOURCES" --train "$TRAIN_CLIPS" --val "$VAL_CLIPS" --test "$TEST_CLIPS" --seed "$SEED" \
    --output "$OUT/data" --overwrite

echo "== (b) training frame_mn06 from scratch -> $OUT/train"
# the scratch preset's augmentation with MixStyle, FilterAugment and frequency warping turned up (they vary
# the timbre of a recording: the model must recognise recordings it never heard); the last weights of the
# cosine schedule are exported (validation mixes training recordings, so it cannot judge generalisation)
resume=()
if [[ -f "$OUT/train/checkpoints/last.ckpt" ]]; then resume=(--resume); fi  # a killed run continues exactly
if [[ ! -f "$OUT/train/model.pt" ]]; then
ptsed finetune \
    --model frame_mn06 --preset scratch --name demo-synthetic-10class-frame_mn06 \
    --labels "$OUT/data/classes.txt" --train "$OUT/data/train" --valid "$OUT/data/val" \
    --epochs "$EPOCHS" --window "$WINDOW" --epoch-len "$EPOCH_LEN" --batch-size "$BATCH" --lr 3e-3 --warmup-steps 100 \
    --set augment.mixstyle_p=0.5 --set augment.filter_augment_p=0.8 --set augment.freq_warp_p=0.8 \
    --val-every "$VAL_EVERY" --select last --threads "$THREADS" --seed "$SEED" \
    --output "$OUT/train" "${resume[@]}"
echo $(( $(date +%s) - start )) > "$OUT/train/seconds"  # data generation and training
fi
train_seconds=$(cat "$OUT/train/seconds" 2>/dev/null || echo 0)

echo "== (c) evaluation on the held-out test soundscapes -> $OUT/eval_test, and on the validation ones -> $OUT/eval"
# the figure an outside check measures: `ptsed evaluate --model` at its defaults, on soundscapes of recording
# groups that neither training nor validation used; the demo installed now (before this run) for comparison
ptsed evaluate --model "$OUT/train/model.pt" --audio "$OUT/data/test/audio" \
    --ground-truth "$OUT/data/test/labels.tsv" --durations "$OUT/data/test/durations.tsv" --output "$OUT/eval_test"
ptsed evaluate --model demo --audio "$OUT/data/test/audio" \
    --ground-truth "$OUT/data/test/labels.tsv" --durations "$OUT/data/test/durations.tsv" --output "$OUT/eval_test_installed"
# baseline: the same model before training (random initialisation, seed 0)
python - "$OUT/data/classes.txt" "$OUT/untrained.pt" <<'PY'
import sys, torch
from ptsed.models.factory import create_model, save_checkpoint
from ptsed.train.finetune import adapt_model
torch.manual_seed(0)
labels = [line.strip() for line in open(sys.argv[1], encoding="utf-8") if line.strip()]
save_checkpoint(adapt_model(create_model("frame_mn06", pretrained=False), labels), sys.argv[2])
PY
ptsed evaluate --model "$OUT/untrained.pt" --audio "$OUT/data/val/audio" \
    --ground-truth "$OUT/data/val/labels.tsv" --durations "$OUT/data/val/durations.tsv" \
    --median-filter 0.28 --metrics psds1,collar_f1 --no-plot --output "$OUT/eval_untrained"
# PSDS1 (threshold-free) and collar-based event-F1 at 0.5, median filter 0.28 s, as during training
ptsed evaluate --model "$OUT/train/model.pt" --audio "$OUT/data/val/audio" \
    --ground-truth "$OUT/data/val/labels.tsv" --durations "$OUT/data/val/durations.tsv" \
    --median-filter 0.28 --metrics psds1,collar_f1 --no-plot --output "$OUT/eval"
# event-F1 of the detections with the per-class thresholds and median filters stored in the checkpoint
# (chosen on this same validation split, so this number is optimistic)
ptsed detect "$OUT/data/val/audio" --checkpoint "$OUT/train/model.pt" --output "$OUT/detect" --format tsv \
    --threshold "$OUT/train/thresholds.json" --median-filter "$OUT/train/median_filter.json" --quiet
ptsed evaluate --detections "$OUT/detect" --ground-truth "$OUT/data/val/labels.tsv" \
    --durations "$OUT/data/val/durations.tsv" --metrics collar_f1 --no-plot --output "$OUT/eval_tuned"

echo "== (d) demo export -> $OUT/demo"
python -m ptsed.release.demo export "$OUT/train/model.pt" "$OUT/data" "$OUT/demo" \
    --train-seconds "$train_seconds" --eval "$OUT/eval/summary.json" --eval-tuned "$OUT/eval_tuned/summary.json" \
    --eval-untrained "$OUT/eval_untrained/summary.json" --eval-test "$OUT/eval_test/summary.json"
if [[ "$INSTALL" == "1" ]]; then
    cp "$OUT/demo/"* src/ptsed/assets/demo/
    echo "installed into src/ptsed/assets/demo/"
fi
python - "$OUT" <<'PY'
import json, sys
out = sys.argv[1]
for name, what in (("eval_test_installed", "demo installed before this run"), ("eval_test", "this run")):
    s = json.load(open(f"{out}/{name}/summary.json", encoding="utf-8"))
    print(f"held-out test, {what}: psds1_macro {s['psds1_macro']:.3f}, psds1 {s['psds1']:.3f}")
PY
echo "done in $(( $(date +%s) - start )) s"
