"""The one exception every bad topology input raises."""


class TopologyError(ValueError):
    """A one-line description of what is wrong with a topology or its description."""
