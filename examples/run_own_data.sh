#!/usr/bin/env bash
# The README's "your own data" numbers: both example sets, with the CLI only (train on train, evaluate on test,
# export, evaluate every exported file through the runtime). Writes under artifacts/.
set -euo pipefail
cd "$(dirname "$0")/.."
R=.venv/bin/rnnedge
BM="--channels acc-x,acc-y,acc-z,gyro-x,gyro-y,gyro-z --label-column label --sample-rate 10"
JV="--channels $(echo lpc{1..12} | tr ' ' ,) --label-column label --sample-rate 156.25"
$R train --data examples/data/basicmotions/train --test examples/data/basicmotions/test $BM --task classify \
    --hidden 64 --layers 1 --epochs 150 --patience 50 --lanes 8 --out artifacts/basicmotions
$R export artifacts/basicmotions/model.pt --out artifacts/basicmotions-bundle
$R evaluate artifacts/basicmotions-bundle --out artifacts/basicmotions-eval
$R train --data examples/data/japanesevowels/train --test examples/data/japanesevowels/test $JV --task classify \
    --hidden 64 --layers 1 --epochs 100 --patience 30 --lanes 16 --out artifacts/japanesevowels
$R export artifacts/japanesevowels/model.pt --out artifacts/japanesevowels-bundle
$R evaluate artifacts/japanesevowels-bundle --out artifacts/japanesevowels-eval
