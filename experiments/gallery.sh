#!/bin/sh
# Regenerate the README gallery (docs/gallery/*.png and the CSV behind each) from the repository root:
#   . .venv/bin/activate && sh experiments/gallery.sh
# About 40 minutes on two cores: the scaling figure alone takes 23, 17 of them the 10,000-GPU ring (its op
# count is quadratic in GPUs; streamed, it fits in about 1 GB). The scenario figures (interference, placement)
# add about eight minutes. Every line is the command printed under its figure in README.md.
set -e
python experiments/fireflyer_allreduce.py --jobs 2 --out docs/gallery
python experiments/crossover.py --gpus 128 --factor 4 --jobs 2 --out docs/gallery
python experiments/scaling.py --gpus 16,64,256,1024,4096,10000 --jobs 2 --out docs/gallery
python experiments/bottlenecks.py --gpus 256 --jobs 2 --out docs/gallery
python experiments/node_design.py --gpus 128 --jobs 2 --out docs/gallery
python experiments/stragglers.py --jobs 2 --out docs/gallery
python experiments/uncertainty.py --jobs 2 --out docs/gallery
python experiments/interference.py --jobs 2 --out docs/gallery
python experiments/placement.py --oversubscription 1,3 --jobs 2 --out docs/gallery
python experiments/validation.py --ranks 2 --algos ring,hfreduce,rabenseifner,mpi --sizes 64KiB,1MiB,16MiB --out docs/gallery
# Emulated nodes need root (network namespaces; see tests/cluster) and about ten minutes:
if [ "$(id -u)" = 0 ]; then
python experiments/validation.py --emulated 4x2 --rate 1gbit --algos ring,rabenseifner,hier,hfreduce,mpi --sizes 1MiB,4MiB,16MiB,64MiB --iters 8 --warmup 2 --blocks 2 --out docs/gallery/emulated
else echo "# not root: emulated validation skipped"; fi
