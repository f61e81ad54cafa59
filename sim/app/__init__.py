"""The application around the simulator: the ``flyersim`` command line, runs over sizes, comparisons, reports, and the MPI measurement commands (``mpi``, ``calibrate``, ``validate``)."""
