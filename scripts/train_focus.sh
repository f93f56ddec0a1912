#!/usr/bin/env bash
# FOCUS at CPU-small scale (BASELINES.md A.11.7) and the rows of its ablation table (A.11.5): FOCUS, the
# MoFA-style baseline (unmasked L_pixel, no S) and Backbone-Supervised (the true visible-face masks; an
# upper bound, it reads masks), each with its misfit prior, evaluated on held-out generated photos with
# exact occluder masks and on the protocol. Training data: the photo engine's occluded pictures (the
# analogue of CelebA-HQ: photo-like faces, most occluded), the same folders as scripts/train_default.sh.
# Run from the repository root with the venv active (the photo extra installed, as scripts/setup.sh does):
#   DATA=... RUNS=... REPORTS=... ./scripts/train_focus.sh
# On a GPU add DEVICE=cuda and the GPU-medium sizes: FOCUS_SIZE="--image-size 224 --backbone resnet50
# --unet-width 64 --batch 12 --r-init-steps 1000 --s-pretrain-steps 200 --em-cycles 2 --em-s-steps 100".
set -euo pipefail
DATA=${DATA:-data}
RUNS=${RUNS:-runs}
REPORTS=${REPORTS:-reports}
DEVICE=${DEVICE:-cpu}
FOCUS_SIZE=${FOCUS_SIZE:-}   # empty: the CPU-small defaults (64 px, ResNet-18, U-Net n1 16, batch 8, 800 + 200 + 2 x 600 it)
export OMP_NUM_THREADS=${OMP_NUM_THREADS:-1}

[ -f "$DATA/photo_train/manifest.json" ] || ofer synth photo --n 800 -o "$DATA/photo_train" --seed 0 --workers 2
[ -f "$DATA/photo_expr/manifest.json" ] || ofer synth photo --n 400 --expressions 3 --variants 1 -o "$DATA/photo_expr" --seed 2 --workers 2
ofer synth photo --n 100 -o "$DATA/photo_heldout" --seed 9 --workers 2      # resumes / checks if made
ofer synth protocol --model default -o "$DATA/co545" --workers 2

TRAIN=("$DATA/photo_train" "$DATA/photo_expr")
for variant in focus mofa supervised; do
  ofer train focus --data "${TRAIN[@]}" --variant "$variant" -o "$RUNS/focus_$variant" --seed 0 --device "$DEVICE" \
      $FOCUS_SIZE --quiet
  # R_syn: 400 iterations at CPU-small scale (half of R's init; the misfit prior of the FOCUS run in the README)
  ofer train focus-misfit --data "${TRAIN[@]}" -o "$RUNS/focus_$variant" --seed 0 --steps 400 --device "$DEVICE" --quiet
done

ofer eval pictures "$RUNS"/focus_{focus,mofa,supervised} --data "$DATA/photo_heldout" -o "$REPORTS/focus_pictures" \
    --device "$DEVICE"
for variant in focus mofa supervised; do
  ofer eval co545 --data "$DATA/co545" --checkpoints "$RUNS/focus_$variant" --method focus --method focus-mp \
      -o "$REPORTS/focus_co545_$variant" --device "$DEVICE"
done
