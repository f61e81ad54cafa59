"""Closed-form collective costs (Thakur, Rabenseifner, Gropp, IJHPCA 2005) and nccl-tests bus bandwidth.

Arguments: ``p`` ranks, ``n`` message bytes, ``alpha`` seconds per message,
``beta`` seconds per byte, ``gamma`` reduction seconds per byte. Round counts
that must be whole use ``ceil(lg p)`` (binomial trees, recursive doubling for
any p); formulas stated only for p = 2^k raise ValueError otherwise. One rank
costs nothing.

>>> ring_allreduce(4, 1000, alpha=1e-6, beta=1e-9, gamma=0.0)
7.5e-06
>>> rabenseifner_allreduce(8, 800, 1.0, 1.0, 1.0) == 2 * 3 + 2 * 7 / 8 * 800 + 7 / 8 * 800
True
>>> busbw_factor("allreduce", 8)
1.75
"""

import numbers


def _lg(p):
    """Rounds of a doubling scheme over p ranks: ceil(log2 p)."""
    return (p - 1).bit_length()


def _check_p(p):
    if isinstance(p, bool) or not isinstance(p, numbers.Integral) or p < 1:
        raise ValueError(f"rank count must be a positive integer, got {p!r}")
    return int(p)


def _power_of_two(p, name):
    p = _check_p(p)
    if p & (p - 1):
        raise ValueError(f"{name} needs a power-of-two rank count, got {p}")
    return _lg(p)


def ring_allgather(p, n, alpha, beta):
    """(p-1) alpha + (p-1)/p n beta."""
    p = _check_p(p)
    return (p - 1) * alpha + (p - 1) / p * n * beta


def recursive_doubling_allgather(p, n, alpha, beta):
    """lg p alpha + (p-1)/p n beta, p = 2^k."""
    return _power_of_two(p, "recursive doubling allgather") * alpha + (p - 1) / p * n * beta


def ring_reduce_scatter(p, n, alpha, beta, gamma):
    """(p-1) alpha + (p-1)/p n (beta + gamma); also the pairwise-exchange cost."""
    p = _check_p(p)
    return (p - 1) * alpha + (p - 1) / p * n * (beta + gamma)


def recursive_halving_reduce_scatter(p, n, alpha, beta, gamma):
    """lg p alpha + (p-1)/p n (beta + gamma), p = 2^k."""
    return _power_of_two(p, "recursive halving reduce-scatter") * alpha + (p - 1) / p * n * (beta + gamma)


def ring_allreduce(p, n, alpha, beta, gamma):
    """2(p-1) alpha + 2(p-1)/p n beta + (p-1)/p n gamma (reduce-scatter then allgather).

    >>> ring_allreduce(1, 1e9, 1.0, 1.0, 1.0)
    0.0
    """
    p = _check_p(p)
    return 2 * (p - 1) * alpha + (p - 1) / p * n * (2 * beta + gamma)


def recursive_doubling_allreduce(p, n, alpha, beta, gamma):
    """lg p (alpha + n beta + n gamma) for p = 2^k; otherwise MPICH's fold.

    With p' = 2^floor(lg p) < p the p - p' extra ranks first send their input
    to a partner, which reduces it (alpha + n beta + n gamma); the p' core ranks
    run lg p' exchange-and-reduce rounds; each partner sends the result back
    (alpha + n beta): (lg p' + 2)(alpha + n beta) + (lg p' + 1) n gamma
    (:mod:`collectives.recursive_doubling`; MPICH
    ``MPIR_Allreduce_intra_recursive_doubling``). That is one alpha + n beta more
    than ceil(lg p) rounds, the count Thakur-Rabenseifner-Gropp state, which
    assumes p = 2^k.

    >>> recursive_doubling_allreduce(8, 10, 1.0, 0.5, 0.25)
    25.5
    >>> recursive_doubling_allreduce(6, 10, 1.0, 0.5, 0.25)  # 4 (1 + 5) + 3 (2.5)
    31.5
    """
    p = _check_p(p)
    q = 1 << (p.bit_length() - 1)
    core = _lg(q) * (alpha + n * beta + n * gamma)
    return core if q == p else core + 2 * (alpha + n * beta) + n * gamma


def rabenseifner_allreduce(p, n, alpha, beta, gamma):
    """Recursive-halving reduce-scatter + recursive-doubling allgather.

    p = 2^k: 2 lg p alpha + 2(p-1)/p n beta + (p-1)/p n gamma. Otherwise the
    p - p' extra ranks (p' = 2^floor(lg p)) first fold their data into a partner
    (alpha + n beta + n gamma) and receive the result at the end (alpha + n beta):
    (2 lg p' + 2) alpha + (2 + 2(p'-1)/p') n beta + (1 + (p'-1)/p') n gamma.
    reference/cost-models.md writes p where this derivation has p'.

    >>> rabenseifner_allreduce(6, 400, 1.0, 1.0, 0.0)  # p' = 4
    1406.0
    """
    p = _check_p(p)
    q = 1 << (p.bit_length() - 1)
    f = (q - 1) / q
    cost = 2 * _lg(q) * alpha + 2 * f * n * beta + f * n * gamma
    return cost if q == p else cost + 2 * alpha + 2 * n * beta + n * gamma


def binomial_reduce(p, n, alpha, beta, gamma):
    """lg p (alpha + n beta + n gamma), lg p rounded up."""
    p = _check_p(p)
    return _lg(p) * (alpha + n * beta + n * gamma)


def binomial_broadcast(p, n, alpha, beta):
    """lg p (alpha + n beta), lg p rounded up.

    >>> binomial_broadcast(5, 100, 1.0, 0.01)
    6.0
    """
    p = _check_p(p)
    return _lg(p) * (alpha + n * beta)


BUSBW_FACTORS = {
    "allreduce": lambda n: 2 * (n - 1) / n,
    "reduce_scatter": lambda n: (n - 1) / n,
    "allgather": lambda n: (n - 1) / n,
    "alltoall": lambda n: (n - 1) / n,
    "broadcast": lambda n: 1.0,
    "reduce": lambda n: 1.0,
}


def busbw_factor(collective, n):
    """nccl-tests busbw / algbw for ``collective`` over ``n`` ranks (doc/PERFORMANCE.md).

    >>> busbw_factor("reduce_scatter", 4), busbw_factor("broadcast", 4)
    (0.75, 1.0)
    >>> busbw_factor("scan", 4)
    Traceback (most recent call last):
    ValueError: no busbw factor for collective 'scan' (choose from allreduce, reduce_scatter, allgather, alltoall, broadcast, reduce)
    """
    if collective not in BUSBW_FACTORS:
        raise ValueError(f"no busbw factor for collective {collective!r} (choose from {', '.join(BUSBW_FACTORS)})")
    n = _check_p(n)
    return BUSBW_FACTORS[collective](n)

