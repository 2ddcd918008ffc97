"""The namespace labs of the command-line tests (test_cli, test_cli_ports,
test_metrics_cli): building the nat lab and removing any lab.

nat lab, namespaces ns["client"], ns["lb"], ns["be"]:

    client eth0 198.18.0.2/24 -- front0 198.18.0.1/24  lb  back0 198.18.1.1/24 -- eth0 be (backend addresses)

with a route to the VIPs (198.18.100.0/24) via the balancer on the client
and a default route via the balancer on the backend host.
"""
import os
import subprocess
import sys

from ansible_collections.netfleet.xdp_lb.plugins.module_utils.xdp_lb import engine, model


def sh(*argv):
    subprocess.run(argv, check=True, stdout=subprocess.DEVNULL)


def add_namespaces(ns):
    for name in ns.values():
        sh("ip", "netns", "add", name)
        sh("ip", "-n", name, "link", "set", "lo", "up")


def nat_topology(ns, backends):
    """The nat lab above, ``backends`` the backend host's addresses."""
    add_namespaces(ns)
    sh("ip", "link", "add", "eth0", "netns", ns["client"], "type", "veth", "peer", "name", "front0",
       "netns", ns["lb"])
    sh("ip", "link", "add", "back0", "netns", ns["lb"], "type", "veth", "peer", "name", "eth0",
       "netns", ns["be"])
    for n, dev, addr in [(ns["client"], "eth0", "198.18.0.2/24"), (ns["lb"], "front0", "198.18.0.1/24"),
                         (ns["lb"], "back0", "198.18.1.1/24")] + [(ns["be"], "eth0", a + "/24") for a in backends]:
        sh("ip", "-n", n, "addr", "add", addr, "dev", dev)
        sh("ip", "-n", n, "link", "set", dev, "up")
        # GRO where XDP sends frames, no tx checksum offload where sockets send (LAB-NOTES)
        sh("ip", "netns", "exec", n, "ethtool", "-K", dev, "gro", "on", "tx", "off")
    sh("ip", "-n", ns["client"], "route", "add", "198.18.100.0/24", "via", "198.18.0.1")
    sh("ip", "-n", ns["be"], "route", "add", "default", "via", "198.18.1.1")
    sh("ip", "netns", "exec", ns["lb"], "sysctl", "-qw", "net.ipv4.ip_forward=1",
       "net.ipv4.conf.front0.accept_local=1", "net.ipv4.conf.back0.accept_local=1",
       "net.ipv4.conf.all.rp_filter=0", "net.ipv4.conf.front0.rp_filter=2", "net.ipv4.conf.back0.rp_filter=2")


def send_udp(ns, vip, ports):
    """One 20-byte UDP datagram to ``vip``:53 from the client (198.18.0.2) per source port in ``ports``."""
    code = ("import socket\n"
            "for p in %r:\n"
            "    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)\n"
            "    s.bind(('198.18.0.2', p))\n"
            "    s.sendto(b'x' * 20, (%r, 53))\n"
            "    s.close()\n" % (list(ports), vip))
    sh("ip", "netns", "exec", ns["client"], "/usr/bin/python3", "-c", code)


def remove(ns, params, deployed):
    """Removes the instance of ``params`` (if it was deployed), the namespaces and the pins;
    goes on past a failure of the first step."""
    if deployed:
        try:
            engine.run(model.validate({"name": params["name"], "netns": ns["lb"], "state": "absent",
                                       "interfaces": params["interfaces"], "pin_dir": params["pin_dir"],
                                       "state_dir": params["state_dir"]}))
        except Exception as exc:   # pragma: no cover - cleanup continues below
            sys.stderr.write("cleanup: %s\n" % exc)
    for name in ns.values():
        subprocess.run(["ip", "netns", "del", name], stderr=subprocess.DEVNULL, check=False)
    if os.path.isdir(params["pin_dir"]):
        engine.remove_pins(params["pin_dir"])
