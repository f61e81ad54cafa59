#!/bin/sh
# The README's accuracy figures ("Predicted vs measured"), each from three consecutive runs of flyersim
# validate, on a quiet machine, from the repository root (root for the emulated nodes):
#   . .venv/bin/activate && sh experiments/accuracy.sh
# About 35 minutes on two cores (the emulated ranks yield their core between polls: tests/cluster/emulate.py THROTTLE). Prints, per measurement, each run's median and spread per row, whether
# the runs agree within their spread, and each algorithm's geometric-mean error per run (all sizes, and
# 16 MiB and up); JSON of every run in results/accuracy/, the emulated figure in docs/gallery/emulated.
# The emulated nodes' links are shaped to 300 Mbit/s, where the links bind: all nodes sending at once (one way)
# carried 107-121 MB/s in all (calibrate's switch_bandwidth) against the 234-299 MB/s the two cores' TCP
# traffic reaches at 1 Gbit/s, so at 1 Gbit/s the CPUs, not the shaped network, are the bottleneck (README).
# ACCURACY_1GBIT=1 adds three runs at 1 Gbit/s (that CPU-bound case); ACCURACY_SPINE=1 one run with a
# 300 Mbit/s spine between the two halves of the emulated nodes (2:1 oversubscribed).
set -e
echo "== 2 MPI ranks on this machine: repeatability"
python experiments/validation.py --runs 3 --ranks 2 --algos ring,rabenseifner --sizes 1MiB,16MiB,64MiB --iters 20 --out results/accuracy/local --no-plot
if [ "$(id -u)" != 0 ]; then echo "# not root: emulated nodes skipped"; exit 0; fi
echo "== 4 emulated nodes x 2 ranks, 300 Mbit/s links"
python experiments/validation.py --runs 3 --emulated 4x2 --rate 300mbit --algos ring,rabenseifner,hier,hfreduce,mpi --sizes 1MiB,4MiB,16MiB,64MiB --iters 8 --warmup 2 --blocks 2 --out docs/gallery/emulated
if [ -n "$ACCURACY_1GBIT" ]; then
echo "== the same at 1 Gbit/s (the two cores bind, not the links)"
python experiments/validation.py --runs 3 --emulated 4x2 --rate 1gbit --algos ring,rabenseifner,hier,hfreduce,mpi --sizes 1MiB,4MiB,16MiB,64MiB --iters 8 --warmup 2 --blocks 2 --out results/accuracy/1gbit
fi
if [ -n "$ACCURACY_SPINE" ]; then
echo "== the same with a 300 Mbit/s spine"
python experiments/validation.py --emulated 4x2 --rate 300mbit --spine 300mbit --algos ring,rabenseifner,hier,hfreduce,mpi --sizes 16MiB,64MiB --iters 8 --warmup 2 --blocks 2 --out results/accuracy/spine
fi
