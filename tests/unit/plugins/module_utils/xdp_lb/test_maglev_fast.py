"""The fast table builders give exactly the tables of the reference definitions.

maglev.turn_order (sort of integer keys) must equal the heap-based
maglev.turns; the tables must not change across versions (every host of a
fleet must build the same ring): golden digests taken before the speed-up.
"""
import itertools
import random

import pytest

from ansible_collections.netfleet.xdp_lb.plugins.module_utils.xdp_lb import maglev, maps


@pytest.mark.parametrize("seed", range(40))
def test_turn_order_equals_turns(seed):
    rnd = random.Random(seed)
    n = rnd.randint(1, 30)
    weights = [rnd.choice([0, 1, 2, 3, 7, 50, 99, 100, 1000, rnd.randint(0, 1000)]) for dummy in range(n)]
    count = rnd.randint(0, 5000)
    assert maglev.turn_order(weights, count) == list(itertools.islice(maglev.turns(weights), count))


def test_turn_order_edge_cases():
    assert maglev.turn_order([], 10) == []
    assert maglev.turn_order([0, 0], 10) == []
    assert maglev.turn_order([5], 3) == [0, 0, 0]
    assert maglev.turn_order([1, 1000], 5) == list(itertools.islice(maglev.turns([1, 1000]), 5))


def _items(n, wmode, rnd):
    items = []
    for i in range(n):
        w = 100
        if wmode == "mix":
            w = [1, 50, 100, 1000][i % 4]
        if wmode == "one50" and i == n // 2:
            w = 50
        if wmode == "zero" and i % 3 == 0:
            w = 0
        if wmode == "rand":
            w = rnd.randint(0, 1000)
        items.append(("198.18.%d.%d:80" % (2 + i // 250, 1 + i % 250), w, i + 1))
    return items


# (backends, ring size, weights) -> (maglev digest, five_tuple digest), taken with the
# reference implementation (heap turns, multiplied probes, per-int digest).
GOLDEN = [
    ((3, 65537, "eq"), ("855fe9d06bb7", "4a9d01127b37")),
    ((10, 257, "mix"), ("dfb4e4c771eb", "6c5cb30e14d0")),
    ((1000, 131071, "one50"), ("472a5828808a", "0b5431a4e245")),
    ((7, 1009, "zero"), ("01e4ead6c6b2", "4d220e9d71a9")),
    ((50, 65537, "rand"), ("efaf1fbda845", "17c97e1f58c1")),
    ((1, 13, "eq"), ("c9d6b71ddb12", "c9d6b71ddb12")),
]


def test_tables_match_golden_digests():
    rnd = random.Random(7)   # consumed in order, as when the digests were taken
    for (n, size, wmode), (want_maglev, want_spread) in GOLDEN:
        items = _items(n, wmode, rnd)
        assert maps.ring_digest(maglev.build_table("maglev", items, size)) == want_maglev, (n, size, wmode)
        assert maps.ring_digest(maglev.build_table("five_tuple", items, size)) == want_spread, (n, size, wmode)


def test_ring_digest_is_the_little_endian_u32_digest():
    import hashlib
    ring = [0, 1, 4095, 2 ** 32 - 1, 7]
    want = hashlib.sha256(b"".join(v.to_bytes(4, "little") for v in ring)).hexdigest()[:12]
    assert maps.ring_digest(ring) == want
    assert maps.ring_digest(None) is None


def reference_maglev(items, size):
    """Maglev as the paper writes it: candidate n of backend i is (offset + n * skip) % size."""
    items = sorted(items)
    if not any(w > 0 for _k, w, _v in items):
        return [0] * size
    table = [None] * size
    perms = [maglev.permutation(k, size) for k, _w, _v in items]
    tried = [0] * len(items)
    for i in itertools.islice(maglev.turns([w for _k, w, _v in items]), size):
        offset, skip = perms[i]
        while True:
            pos = (offset + tried[i] * skip) % size
            tried[i] += 1
            if table[pos] is None:
                table[pos] = items[i][2]
                break
    return table


@pytest.mark.parametrize("seed", range(30))
def test_maglev_table_equals_the_reference(seed):
    """Probe walk and the free-position scan of the last turns give the paper's table."""
    rnd = random.Random(1000 + seed)
    size = rnd.choice([3, 5, 13, 101, 1009, 4099])
    n = rnd.randint(1, min(40, size))
    weights = [rnd.choice([0, 1, 2, 50, 100, 1000, rnd.randint(0, 1000)]) for dummy in range(n)]
    items = [("198.18.1.%d:%d" % (i + 1, rnd.randint(1, 65535)), w, i + 1) for i, w in enumerate(weights)]
    assert maglev.maglev_table(items, size) == reference_maglev(items, size)


@pytest.mark.parametrize("weights, count", [
    ([100] * 7, 20000), ([100, 50, 100, 25, 100], 20000), ([3, 5, 7, 11], 20000), ([1, 1000], 20000),
    ([0, 100, 0, 50], 1500),      # ten whole periods of 150 turns, zero weights among them
    ([0, 100, 0, 50], 1501), ([7], 65537), ([1000, 999], 1999), ([1000, 999], 1998)])
def test_turn_order_long_runs(weights, count):
    """Many passes, few distinct weights: the merged passes repeat (every max(weights) passes) and must stay in order."""
    assert maglev.turn_order(weights, count) == list(itertools.islice(maglev.turns(weights), count))
