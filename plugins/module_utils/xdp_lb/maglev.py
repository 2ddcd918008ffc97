# -*- coding: utf-8 -*-
# Copyright: (c) 2026, netfleet.xdp_lb contributors
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
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
import math


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
    sequence is every turn sorted by (pass, index).  A backend has at most
    one turn per pass (``w <= top``) and backends of the same weight have
    their turns in the same passes, so each pass is the merge of the index
    lists of the weights due in it; a pass with the same set of weights
    due as an earlier one repeats that merge (with equal weights every pass
    is the list of all backends).  Pass ``p + top`` has the same weights
    due as pass ``p`` (``floor((p + top) * w / top)`` is ``floor(p * w / top)
    + w``): the sequence repeats every ``top`` passes (as many turns as the
    weights add up to), so at most one period is computed.
    """
    active = [(i, w) for i, w in enumerate(weights) if w > 0]
    if not active or count <= 0:
        return []
    top = max(w for _i, w in active)
    groups = {}
    for i, w in active:
        groups.setdefault(w, []).append(i)
    merged = {}
    out = []
    for p in range(1, top + 1):
        # weight w has a turn in pass p when floor(p * w / top) grows
        due = tuple(w for w in groups if (p * w) // top != ((p - 1) * w) // top)
        order = merged.get(due)
        if order is None:
            order = merged[due] = sorted(i for w in due for i in groups[w])
        out.extend(order)
        if len(out) >= count:
            break
    if len(out) < count:
        # a whole period (top passes): repeat it
        reps = -(-count // len(out))
        out = out * reps
    del out[count:]
    return out


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
    order = turn_order([w for _k, w, _v in items], size)
    # Every turn fills exactly one position: size turns fill the table.
    # While many positions are free, walk each backend's permutation; the
    # last ones would take about size / free steps per turn, so with
    # ``tail`` positions left switch to scanning the free positions.
    tail = min(size, max(1, math.isqrt(size)))
    for i in order[:size - tail]:
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
    _fill_tail(table, order[size - tail:], perms, nexts, values, size)
    return table


def _fill_tail(table, order, perms, nexts, values, size):
    """The last turns of ``maglev_table``: same positions, found from the free ones.

    From its next candidate ``pos``, backend ``i`` reaches position ``p``
    after ``(p - pos) / skip`` steps (mod ``size``, a prime).  The walk
    would stop at the free position with the fewest steps: taken positions
    stay taken.
    """
    free = [p for p in range(size) if table[p] is None]
    inverse = {}
    for i in order:
        pos = nexts[i]
        skip = perms[i][1]
        if table[pos] is not None:
            inv = inverse.get(i)
            if inv is None:
                inv = inverse[i] = pow(skip, -1, size)   # skip^-1 mod size (a prime)
            steps = min([(p - pos) * inv % size for p in free])
            pos = (pos + steps * skip) % size
        table[pos] = values[i]
        free.remove(pos)
        nexts[i] = (pos + skip) % size


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
