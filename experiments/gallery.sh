#!/bin/sh
# Regenerate the README gallery (docs/gallery/*.png and the CSV behind each) from the repository root:
#   . .venv/bin/activate && sh experiments/gallery.sh
# About five minutes on two cores; every line is the command printed under its figure in README.md.
set -e
python experiments/fireflyer_allreduce.py --jobs 2 --out docs/gallery
python experiments/crossover.py --gpus 128 --factor 4 --jobs 2 --out docs/gallery
python experiments/scaling.py --gpus 16,64,256,512,1024,4096,10000 --max-gpus ring=512 --jobs 2 --out docs/gallery
python experiments/bottlenecks.py --gpus 256 --jobs 2 --out docs/gallery
python experiments/node_design.py --gpus 128 --jobs 2 --out docs/gallery
python experiments/validation.py --ranks 2 --algos ring,hfreduce,rabenseifner,mpi --sizes 64KiB,1MiB,16MiB --out docs/gallery
