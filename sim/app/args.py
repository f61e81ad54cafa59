"""Command-line argument types shared by ``flyersim`` (:mod:`sim.app.cli`) and the experiment scripts
(:mod:`experiments.sweep`): one-line usage errors, positive integers, sizes, names and ``KEY=VALUE`` pairs.

>>> override("network.link_bandwidth=100Gb/s"), override("max_chunks=256"), override("p2p=[[5, 6]]")
(('network.link_bandwidth', '100Gb/s'), ('max_chunks', 256), ('p2p', [[5, 6]]))
>>> int_list("16,32"), sizes("1KiB,2KiB"), names(" ring, hfreduce ")
([16, 32], [1024, 2048], ['ring', 'hfreduce'])
>>> positive_int("0")
Traceback (most recent call last):
argparse.ArgumentTypeError: expected a positive integer, got '0'
"""

import argparse
import math
import tomllib

from flyersim.sim.app.sizes import size_list


class Parser(argparse.ArgumentParser):
    """argparse that reports a usage mistake in one line: ``prog: error: message``, exit code 2."""

    def error(self, message):
        self.exit(2, f"{self.prog}: error: {message}\n")


def positive_int(text):
    """argparse type: an integer >= 1."""
    try:
        value = int(text)
    except ValueError:
        value = 0
    if value < 1:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {text!r}")
    return value


def int_list(text):
    """argparse type: comma-separated positive integers, e.g. ``16,32,64``."""
    return [positive_int(part) for part in text.split(",") if part.strip()] or positive_int("")


def positive_number(text):
    """argparse type: a positive finite number."""
    try:
        value = float(text)
    except ValueError:
        value = math.nan
    if not (math.isfinite(value) and value > 0):
        raise argparse.ArgumentTypeError(f"expected a positive number, got {text!r}")
    return value


def number_list(what, lo, hi):
    """argparse type: comma-separated numbers from ``lo`` to ``hi`` (whole ones as int), e.g. ``0,50,100``.

    >>> number_list("loads in %", 0, 1000)("0,12.5")
    [0, 12.5]
    """
    def parse(text):
        try:
            values = [float(part) for part in text.split(",") if part.strip()]
        except ValueError:
            values = []
        if not values or not all(lo <= v <= hi for v in values):
            raise argparse.ArgumentTypeError(f"expected comma-separated {what} from {lo} to {hi}, got {text!r}")
        return [int(v) if v == int(v) else v for v in values]
    return parse


def sizes(text):
    """argparse type: comma-separated sizes such as ``1KiB,186MiB``."""
    try:
        return size_list(text)
    except ValueError as err:
        raise argparse.ArgumentTypeError(str(err)) from None


def size(text):
    """argparse type: one size such as ``186MiB``."""
    return sizes(text)[0] if "," not in text else sizes("")


def names(text):
    """argparse type: comma-separated names (at least one)."""
    out = [part.strip() for part in text.split(",") if part.strip()]
    if not out:
        raise argparse.ArgumentTypeError(f"expected comma-separated names, got {text!r}")
    return out


def literal(value):
    """A TOML literal (number, boolean, array) as such; anything else, e.g. ``100Gb/s``, as a string."""
    try:
        return tomllib.loads(f"v = {value}")["v"]
    except tomllib.TOMLDecodeError:
        return value


def override(text):
    """argparse type: ``KEY=VALUE`` as ``(key, TOML literal)`` (bare strings such as ``100Gb/s`` allowed)."""
    key, sep, value = text.partition("=")
    if not sep or not key.strip():
        raise argparse.ArgumentTypeError(f"expected KEY=VALUE, got {text!r}")
    return key.strip(), literal(value.strip())
