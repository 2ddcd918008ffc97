# -*- coding: utf-8 -*-
# Copyright: (c) 2026, netfleet.xdp_lb contributors
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""Maglev and weighted rings: filled, balanced, consistent, deterministic."""

from __future__ import absolute_import, division, print_function
__metaclass__ = type

import collections
import hashlib
import json
import os
import subprocess
import sys

import pytest

from ansible_collections.netfleet.xdp_lb.plugins.module_utils.xdp_lb import maglev
from ansible_collections.netfleet.xdp_lb.plugins.module_utils.xdp_lb.model import is_prime, validate

M = 65537


def backends(n, weight=100, start=1):
    return [("198.18.%d.%d:80" % (i // 250, i % 250 + 1), weight, i + start) for i in range(n)]


def shares(table):
    return collections.Counter(table)


def test_default_ring_size_is_prime():
    assert is_prime(validate({"interfaces": ["xlbit0"], "services": []}).ring_size)
    assert is_prime(M)


@pytest.mark.parametrize("n", [1, 2, 3, 7, 10, 64, 300, 655])
def test_every_position_filled_and_balanced(n):
    bs = backends(n)
    table = maglev.maglev_table(bs, M)
    assert len(table) == M
    assert None not in table
    assert set(table) == set(b[2] for b in bs)
    expected = M / n
    for count in shares(table).values():
        assert abs(count - expected) <= 0.01 * expected + 1


@pytest.mark.parametrize("weights", [(100, 300), (1, 1000), (100, 50, 25, 1000, 7), (3, 5, 7, 11, 13, 17)])
def test_weighted_maglev_follows_weights(weights):
    bs = [("198.18.1.%d:80" % (i + 1), w, i + 1) for i, w in enumerate(weights)]
    table = maglev.maglev_table(bs, M)
    assert None not in table
    c = shares(table)
    total = sum(weights)
    for key, w, value in bs:
        # within one percent of the table (and of the backend's own share, plus one entry)
        assert abs(c[value] - M * w / total) <= 0.01 * M * w / total + 1


@pytest.mark.parametrize("weights", [(100, 300), (1, 1000), (100, 50, 25, 1000, 7)])
def test_spread_table_is_proportional(weights):
    bs = [("198.18.1.%d:80" % (i + 1), w, i + 1) for i, w in enumerate(weights)]
    table = maglev.spread_table(bs, M)
    assert len(table) == M
    c = shares(table)
    total = sum(weights)
    for key, w, value in bs:
        assert abs(c[value] - M * w / total) <= len(weights)
    # interleaved, not in blocks: the first 'total' entries already hold every backend
    assert set(table[:total]) == set(b[2] for b in bs)


def test_build_table_dispatches_by_scheduler():
    bs = backends(3)
    assert maglev.build_table("maglev", bs, 101) == maglev.maglev_table(bs, 101)
    assert maglev.build_table("five_tuple", bs, 101) == maglev.spread_table(bs, 101)
    assert maglev.build_table("ip_hash", bs, 101) == maglev.spread_table(bs, 101)
    with pytest.raises(ValueError):
        maglev.build_table("random", bs, 101)


def test_zero_weight_drains_and_all_zero_is_empty():
    bs = backends(3)
    bs[1] = (bs[1][0], 0, bs[1][2])
    table = maglev.maglev_table(bs, M)
    assert bs[1][2] not in table and None not in table
    assert maglev.maglev_table([(k, 0, v) for k, _w, v in bs], 101) == [0] * 101
    assert maglev.spread_table([], 101) == [0] * 101


def test_order_of_input_does_not_matter():
    bs = backends(20)
    assert maglev.maglev_table(bs, M) == maglev.maglev_table(list(reversed(bs)), M)


def test_rejects_duplicates_and_bad_weights():
    with pytest.raises(ValueError):
        maglev.maglev_table([("a:1", 1, 1), ("a:1", 1, 2)], 101)
    with pytest.raises(ValueError):
        maglev.maglev_table([("a:1", -1, 1)], 101)


@pytest.mark.parametrize("n", [3, 10, 50, 200])
def test_minimal_disruption_when_one_leaves(n):
    bs = backends(n)
    before = maglev.maglev_table(bs, M)
    gone = bs[n // 2]
    after = maglev.maglev_table([b for b in bs if b is not gone], M)
    owned = sum(1 for v in before if v == gone[2])
    moved = sum(1 for a, b in zip(before, after) if a != b)
    # every position of the leaving backend moves; other moves stay small
    assert moved >= owned
    assert moved / M <= 1.0 / n + 0.01
    # positions of the survivors mostly stay where they were
    assert sum(1 for a, b in zip(before, after) if a != b and a != gone[2]) / M <= 0.01


@pytest.mark.parametrize("n", [3, 10, 50, 200])
def test_minimal_disruption_when_one_joins(n):
    bs = backends(n)
    before = maglev.maglev_table(bs, M)
    new = ("198.18.200.200:80", 100, 99999)
    after = maglev.maglev_table(bs + [new], M)
    gained = sum(1 for v in after if v == new[2])
    moved = sum(1 for a, b in zip(before, after) if a != b)
    assert abs(gained - M / (n + 1)) <= 0.01 * M / (n + 1) + 1
    assert moved / M <= 1.0 / (n + 1) + 0.01


def test_spread_table_is_not_consistent_but_maglev_is():
    # documents why 'maglev' is the default scheduler
    bs = backends(10)
    smaller = bs[:-1]
    spread_moved = sum(1 for a, b in zip(maglev.spread_table(bs, M), maglev.spread_table(smaller, M)) if a != b)
    maglev_moved = sum(1 for a, b in zip(maglev.maglev_table(bs, M), maglev.maglev_table(smaller, M)) if a != b)
    assert maglev_moved < 0.12 * M < spread_moved


def test_permutation_covers_all_positions():
    size = 101
    offset, skip = maglev.permutation("198.18.1.1:80", size)
    assert 0 <= offset < size and 1 <= skip < size
    assert sorted((offset + i * skip) % size for i in range(size)) == list(range(size))


_CHILD = r"""
import hashlib, json, sys
sys.path[:0] = json.loads(sys.argv[1])
from ansible_collections.netfleet.xdp_lb.plugins.module_utils.xdp_lb import maglev
bs = [("198.18.%d.%d:80" % (i // 250, i % 250 + 1), 100 + i % 7, i + 1) for i in range(37)]
t = maglev.maglev_table(bs, 65537) + maglev.spread_table(bs, 65537)
print(hashlib.sha256(json.dumps(t).encode()).hexdigest())
"""


def test_deterministic_across_processes_and_hash_seeds():
    bs = [("198.18.%d.%d:80" % (i // 250, i % 250 + 1), 100 + i % 7, i + 1) for i in range(37)]
    here = hashlib.sha256(json.dumps(maglev.maglev_table(bs, M) + maglev.spread_table(bs, M)).encode()).hexdigest()
    paths = [p for p in sys.path if p]
    for seed in ("1", "4242", "random"):
        env = dict(os.environ, PYTHONHASHSEED=seed)
        out = subprocess.check_output([sys.executable, "-c", _CHILD, json.dumps(paths)], env=env)
        assert out.decode().strip() == here
    # and the table is pinned: a change in the algorithm shows up here
    small = maglev.maglev_table([("198.18.1.1:80", 100, 1), ("198.18.1.2:80", 100, 2),
                                 ("198.18.1.3:80", 100, 3)], 13)
    assert small == [3, 2, 2, 3, 2, 1, 1, 2, 3, 1, 1, 3, 1]
    assert maglev.permutation("198.18.1.1:80", 13) == (12, 10)
    assert small == maglev.maglev_table([("198.18.1.3:80", 100, 3), ("198.18.1.1:80", 100, 1),
                                         ("198.18.1.2:80", 100, 2)], 13)
