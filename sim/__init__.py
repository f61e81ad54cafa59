"""The simulator: the simpy engine, the fluid flow model, routes, metrics, explanations and traces.

The command line and the other application code live in :mod:`flyersim.sim.app`.
"""
