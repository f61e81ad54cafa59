"""flyersim: a cluster communication simulator for GPU allreduce.

The repository's top-level folders install as subpackages of this one name:
``flyersim.topologies`` (hardware descriptions), ``flyersim.collectives``
(algorithms as schedules), ``flyersim.sim`` (the simulator, with the command
line in ``flyersim.sim.app``) and ``flyersim.experiments`` (sweeps and plots).
``python -m flyersim`` is the ``flyersim`` command.
"""
