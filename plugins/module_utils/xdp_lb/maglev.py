# -*- coding: utf-8 -*-
# Copyright: (c) 2026, netfleet.xdp_lb contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Lookup tables ("rings") for the data plane's schedulers.  Pure and deterministic.

A ring has ``size`` (prime) positions, each holding a backend; the data
plane picks ``ring[hash % size]``.

* ``maglev_table``: Maglev hashing (Eisenbud et al., NSDI 2016).  Each
  backend walks its own permutation of the positions (offset and skip from
  SHA-256 of its key) and claims the next free one when its turn comes.
  Removing one of N backends moves little more than its own 1/N share.
* ``spread_table``: the same weighted turns laid out in order, for the
  ``ip_hash`` and ``five_tuple`` schedulers (plain weighted modulo: cheap,
  balanced, not consistent).

Weights: turns are dealt in passes; in every pass each backend earns
``weight`` credit and takes one turn per ``max weight`` of credit (the
scheme Katran's weighted Maglev uses).  After any number of passes every
backend has had ``floor(passes * weight / max_weight)`` turns, so shares
follow weights to within one entry per backend, with turns interleaved.
Weight 0 means no turns (drain).  Nothing here uses ``hash()``: the same
input gives the same table on every host and Python version.
"""

from __future__ import absolute_import, division, print_function
__metaclass__ = type

import hashlib
import heapq


def permutation(key, size):
    """(offset, skip) of ``key``'s permutation over ``size`` positions."""
    digest = hashlib.sha256(key.encode("utf-8")).digest()
    offset = int.from_bytes(digest[0:8], "big") % size
    skip = int.from_bytes(digest[8:16], "big") % (size - 1) + 1
    return offset, skip


def _ordered(backends):
    """Backends as (key, weight, value) sorted by key; input order must not matter."""
    out = sorted(backends, key=lambda b: b[0])
    keys = [b[0] for b in out]
    if len(set(keys)) != len(keys):
        raise ValueError("duplicate backend keys")
    for key, weight, _value in out:
        if not isinstance(weight, int) or weight < 0:
            raise ValueError("weight of %s must be a non-negative integer" % key)
    return out


def turns(weights):
    """Endless sequence of backend indexes: whose turn is next (see module doc)."""
    active = [(i, w) for i, w in enumerate(weights) if w > 0]
    if not active:
        return
    top = max(w for _i, w in active)
    # The k-th turn of backend i comes in pass ceil(k * top / w); ties go by index.
    heap = [((top + w - 1) // w, i, 1) for i, w in active]
    heapq.heapify(heap)
    weight = dict(active)
    while True:
        _due, i, k = heap[0]
        yield i
        k += 1
        w = weight[i]
        heapq.heapreplace(heap, ((k * top + w - 1) // w, i, k))


def turn_order(weights, count):
    """The first ``count`` values of ``turns(weights)``, as a list, computed without a heap.

    Turn ``k`` of backend ``i`` is due in pass ``ceil(k * top / w)``; the
    sequence is every turn sorted by (pass, index).  Each backend's turns
    up to the pass where the ``count``-th turn falls are listed as one
    integer key ``pass * n + index`` and sorted once.
    """
    n = len(weights)
    active = [(i, w) for i, w in enumerate(weights) if w > 0]
    if not active or count <= 0:
        return []
    top = max(w for _i, w in active)
    total = sum(w for _i, w in active)
    # by pass p every backend has had floor(p * w / top) turns: find a p with >= count turns
    last = (count * top + total - 1) // total
    while sum(last * w // top for _i, w in active) < count:
        last += len(active)
    keys = []
    for i, w in active:
        keys.extend(((k * top + w - 1) // w) * n + i for k in range(1, last * w // top + 1))
    keys.sort()
    return [key % n for key in keys[:count]]


def maglev_table(backends, size, empty=0):
    """Maglev lookup table.

    ``backends``: iterable of ``(key, weight, value)``; ``key`` is the
    backend's stable identity (``"address:port"``), ``value`` what the table
    stores (the backend id).  Returns a list of ``size`` values; every
    position holds ``empty`` if no backend has a positive weight.
    """
    if size < 3:
        raise ValueError("table size must be a prime >= 3")
    items = _ordered(backends)
    table = [None] * size
    if not any(w > 0 for _k, w, _v in items):
        return [empty] * size
    perms = [permutation(k, size) for k, _w, _v in items]
    # Backend i's n-th candidate is (offset + n * skip) % size; keep the next
    # one per backend and step it by skip (< size) instead of multiplying.
    nexts = [offset for offset, _skip in perms]
    skips = [skip for _offset, skip in perms]
    values = [v for _k, _w, v in items]
    # Every turn fills exactly one position: size turns fill the table.
    for i in turn_order([w for _k, w, _v in items], size):
        pos = nexts[i]
        skip = skips[i]
        while table[pos] is not None:
            pos += skip
            if pos >= size:
                pos -= size
        table[pos] = values[i]
        pos += skip
        if pos >= size:
            pos -= size
        nexts[i] = pos
    return table


def spread_table(backends, size, empty=0):
    """Weighted table without consistency: positions dealt in turn order."""
    items = _ordered(backends)
    if not any(w > 0 for _k, w, _v in items):
        return [empty] * size
    values = [v for _k, _w, v in items]
    return [values[i] for i in turn_order([w for _k, w, _v in items], size)]


def build_table(scheduler, backends, size, empty=0):
    """The ring for a service's scheduler ('maglev', 'five_tuple', 'ip_hash')."""
    if scheduler == "maglev":
        return maglev_table(backends, size, empty)
    if scheduler in ("five_tuple", "ip_hash"):
        return spread_table(backends, size, empty)
    raise ValueError("unknown scheduler %r" % (scheduler,))
