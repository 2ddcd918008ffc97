"""Both ends of a bulk TCP transfer, for test_bulk.py (run with ip netns exec).

    bulk_peer.py serve ADDR PORT         answer requests until killed (ADDR :: is
                                         any address of both families)
    bulk_peer.py get ADDR PORT BYTES     download BYTES, print "<count> <sha256>"
    bulk_peer.py put ADDR PORT BYTES     upload BYTES, print what the server counted

A request is one line, "get N" or "put N".  The data is deterministic
(random.Random(N).randbytes(N)), so either side knows the expected digest;
the server answers a put with "<count> <sha256>" of what it received.
"""
import hashlib
import random
import socket
import sys

CHUNK = 1 << 16


def data(count):
    return random.Random(count).randbytes(count)


def digest(blob):
    return "%d %s" % (len(blob), hashlib.sha256(blob).hexdigest())


def recv_all(sock, count):
    parts, have = [], 0
    while have < count:
        part = sock.recv(min(CHUNK, count - have))
        if not part:
            break
        parts.append(part)
        have += len(part)
    return b"".join(parts)


def read_line(sock):
    """One request line, read byte by byte (a buffered reader would also
    take the start of an upload)."""
    line = b""
    while not line.endswith(b"\n") and len(line) < 64:
        byte = sock.recv(1)
        if not byte:
            break
        line += byte
    return line.decode().split()


def serve(addr, port):
    family = socket.AF_INET6 if ":" in addr else socket.AF_INET
    srv = socket.socket(family, socket.SOCK_STREAM)
    srv.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    if addr == "::":        # IPv4 too
        srv.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 0)
    srv.bind((addr, port))
    srv.listen(16)
    print("ready", flush=True)
    while True:
        conn, dummy = srv.accept()
        with conn:
            try:
                answer(conn)
            except OSError:         # the client gave up: next one
                pass


def answer(conn):
    line = read_line(conn)
    if len(line) != 2:
        return
    verb, count = line[0], int(line[1])
    if verb == "get":
        conn.sendall(data(count))
    elif verb == "put":
        conn.sendall((digest(recv_all(conn, count)) + "\n").encode())


def client(verb, addr, port, count):
    with socket.create_connection((addr, port), timeout=30) as sock:
        sock.sendall(("%s %d\n" % (verb, count)).encode())
        if verb == "get":
            print(digest(recv_all(sock, count)))
        else:
            sock.sendall(data(count))
            print(sock.makefile("rb").readline().decode().strip())


def main(argv):
    if argv[0] == "serve":
        serve(argv[1], int(argv[2]))
    else:
        client(argv[0], argv[1], int(argv[2]), int(argv[3]))


if __name__ == "__main__":
    main(sys.argv[1:])
