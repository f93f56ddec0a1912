#!/usr/bin/env bash
# Pilot of the photo-domain training (issue 13): the render set plus 600 generated photo faces
# (1,800 occluded copies), the photos 40 % of every epoch, shorter schedules than the shipped run
# (100 / 100 / 20 / 100 epochs) so that it fits in one session on 2 cores; then the real-photo report
# and the held-out photo-domain report. Run from the repository root with the venv active:
#   DATA=... RUN=... ./scripts/train_photo_pilot.sh
# Needs the photo extra (scripts/setup.sh installs it) and $DATA/train10k from scripts/train_default.sh.
set -euo pipefail
DATA=${DATA:-data}
RUN=${RUN:-runs/photo_pilot}
REPORTS=${REPORTS:-reports}
FACES=../shared/assets/faces
export OMP_NUM_THREADS=1   # two trainings share the two cores

ofer synth photo --n 600 -o "$DATA/photo_train_b" --seed 1 --workers 2     # ~40 min
ofer synth photo --n 100 -o "$DATA/photo_heldout" --seed 9 --workers 2     # ~7 min

MIX=("$DATA/train10k" "$DATA/photo_train_b")
W=(0.6 0.4)
ofer train idgen  --data "${MIX[@]}" --data-weights "${W[@]}" -o "$RUN" --epochs 100 --batch 256 --lr 1e-3 --seed 0 \
    --widths 256 128 32 --quiet &
ofer train expgen --data "${MIX[@]}" --data-weights "${W[@]}" -o "$RUN" --epochs 100 --batch 256 --lr 1e-3 --seed 0 \
    --widths 256 128 32 --quiet &
wait
ofer train idrank --data "${MIX[@]}" --data-weights "${W[@]}" -o "$RUN" --epochs 20 --batch 16 --lr 3e-4 --seed 0 \
    --candidates 32 --rank-images 2000 --rank-sampler ddim --rank-steps 25 --rank-vertices 512 --quiet &
ofer train regressor --data "${MIX[@]}" --data-weights "${W[@]}" -o "$RUN" --epochs 100 --batch 256 --lr 1e-3 --seed 0 \
    --widths 512 512 --quiet &
wait

ofer eval photos "$FACES"/{obama,obama2,obama3,biden,yaoming}.jpg "$FACES"/astronaut.png "$FACES"/players.jpg \
    --manifest "$FACES/MANIFEST.csv" --checkpoints "$RUN" -o "$REPORTS/photos_pilot" --method ofer --no-photos
ofer eval photodata --data "$DATA/photo_heldout" --checkpoints "$RUN" -o "$REPORTS/photodata_pilot" \
    --method ofer --method regressor --method fit
