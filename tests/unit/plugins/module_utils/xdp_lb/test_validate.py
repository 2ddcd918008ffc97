"""validate.py: the shared validators (pure)."""
import pytest

from ansible_collections.netfleet.xdp_lb.plugins.module_utils.xdp_lb import layout, maps, validate as v


@pytest.mark.parametrize("name", ["web", "a", "eth0_100", "A-1", "x" * 64])
def test_instance_names_accepted(name):
    assert v.instance_name(name) == name


@pytest.mark.parametrize("name", ["", "../x", "..", "a/b", "a.b", "-a", "_a", "x" * 65, "a b", "web\n", None, 3])
def test_instance_names_refused(name):
    with pytest.raises(v.ConfigError, match="is not a valid instance name"):
        v.instance_name(name, "instance")


def test_state_file_stays_in_the_state_dir():
    assert v.state_file("/var/lib/x", "web") == "/var/lib/x/web.json"
    with pytest.raises(v.ConfigError):
        v.state_file("/var/lib/x", "../../etc/passwd")


@pytest.mark.parametrize("name", ["eth0", "enp0s31f6", "eth0.100", "br-1a2b", "veth_x", "a" * 15])
def test_interface_names_accepted(name):
    assert v.interface_name(name) == name


@pytest.mark.parametrize("name", ["", "a" * 16, "eth0;reboot", "a/b", "a:b", "a b", ".", "..", "-x", ".x",
                                  "eth0\n", "ä" * 8, None])
def test_interface_names_refused(name):
    with pytest.raises(v.ConfigError, match="is not a valid interface name"):
        v.interface_name(name, "interfaces[0]")


@pytest.mark.parametrize("text,want", [("198.18.0.1", ("198.18.0.1", 4)), (" fd00::0001 ", ("fd00::1", 6))])
def test_addresses_normalised(text, want):
    assert v.address(text) == want


@pytest.mark.parametrize("text,rule", [
    ("fd00::1%eth0", "scope id"), ("fe80::1%2", "scope id"), ("127.0.0.1", "loopback"), ("::1", "loopback"),
    ("169.254.0.9", "link-local"), ("fe80::9", "link-local"), ("0.0.0.0", "unspecified"), ("::", "unspecified"),
    ("224.0.0.5", "multicast"), ("ff02::1", "multicast"), ("255.255.255.255", "broadcast"),
    ("0.1.2.3", "this network"), ("::ffff:198.18.0.1", "IPv4-mapped"), ("198.18.0.300", "not an IPv4"),
    ("", "not an IPv4"), (None, "not an IPv4")])
def test_addresses_refused(text, rule):
    with pytest.raises(v.ConfigError, match=rule):
        v.address(text, "vip")


def test_special_addresses_for_lookups():
    assert v.address("127.0.0.1", special_ok=True) == ("127.0.0.1", 4)
    with pytest.raises(v.ConfigError, match="scope id"):
        v.address("fd00::1%lo", special_ok=True)


def _shapes(**sizes):
    s = dict(layout.DEFAULT_SIZES)
    s.update(sizes)
    return maps.expected_map_shapes(s)


def test_map_memory_of_the_defaults():
    m = v.map_memory(_shapes(), 2)
    # lb_ring: 2 x 32 rings of 65537 16-bit ids, 4 to an 8-byte value (ABI 5)
    assert m["lb_ring"] == 2 * 32 * 16385 * 8
    assert 30 << 20 < sum(m.values()) < 40 << 20
    # the default sizes stay within 64 MiB on 64 CPUs (kernel overhead: about 4 MiB of hash buckets)
    assert sum(v.map_memory(_shapes(), 64).values()) + (4 << 20) <= 64 << 20
    assert v.map_memory(_shapes(), 64)["lb_stats"] == 64 * v.map_memory(_shapes(), 1)["lb_stats"]


def test_map_memory_budget_names_the_sizes():
    fields = {"ring_size": 16777213, "max_services": 32}
    with pytest.raises(v.ConfigError) as exc:
        v.check_map_memory(_shapes(XDP_LB_RING_SIZE=16777213), 2, fields, budget_field="max_map_memory")
    msg = str(exc.value)
    assert msg.startswith("map sizes: [max_services 32, ring_size 16777213] need 2")
    assert "more than the budget of 1024.0 MiB (max_map_memory)" in msg and "lb_ring 2048.0 MiB" in msg
    with pytest.raises(v.ConfigError, match="more than a BPF map holds"):
        v.check_map_memory(_shapes(XDP_LB_RING_SIZE=16777213, XDP_LB_MAX_SERVICES=1024), 2, fields)
    assert v.check_map_memory(_shapes(), 2, fields) < v.MAP_MEMORY_BUDGET
