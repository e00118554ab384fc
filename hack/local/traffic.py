"""Demo traffic for the local run: servers inside the demo network namespace, a client outside.

    python3 traffic.py serve ADDRESS CERT KEY   # in the namespace: DNS (udp/53), HTTP (tcp/80),
                                                # TLS (tcp/443), TCP echo (tcp/7), UDP echo (udp/7)
    python3 traffic.py client ADDRESS           # on the host: one round of each, every 0.5 s

Only the standard library, so it runs on any machine with Python 3.
"""
import http.server
import socket
import socketserver
import ssl
import struct
import sys
import threading
import time
import urllib.request

NAMES = ["api.demo.trawl", "db.demo.trawl", "cache.demo.trawl", "login.demo.trawl"]
TLS_NAME = "secure.demo.trawl"


def dns_answer(query: bytes) -> bytes:
    """An A record 10.203.0.2 for whatever was asked (enough for a demo)."""
    header = query[:2] + struct.pack(">HHHHH", 0x8180, 1, 1, 0, 0)
    end = 12
    while query[end] != 0:
        end += query[end] + 1
    question = query[12:end + 5]
    answer = struct.pack(">HHHIH", 0xC00C, 1, 1, 30, 4) + socket.inet_aton("10.203.0.2")
    return header + question + answer


def dns_query(name: str, ident: int) -> bytes:
    labels = b"".join(bytes([len(p)]) + p.encode() for p in name.split("."))
    return struct.pack(">HHHHHH", ident, 0x0100, 1, 0, 0, 0) + labels + b"\x00" + struct.pack(">HH", 1, 1)


def serve(address: str, cert: str, key: str) -> None:
    def udp(port, reply):
        sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        sock.bind((address, port))
        while True:
            data, peer = sock.recvfrom(2048)
            try:
                sock.sendto(reply(data), peer)
            except (IndexError, struct.error):
                pass

    class Echo(socketserver.BaseRequestHandler):
        def handle(self):
            data = self.request.recv(2048)
            if data:
                self.request.sendall(data)

    class Page(http.server.BaseHTTPRequestHandler):
        def do_GET(self):
            body = b"<h1>Trawl demo</h1>\n"
            self.send_response(200)
            self.send_header("content-type", "text/html")
            self.send_header("content-length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args):
            pass

    socketserver.ThreadingTCPServer.allow_reuse_address = True
    http_server = socketserver.ThreadingTCPServer((address, 80), Page)
    tls_server = socketserver.ThreadingTCPServer((address, 443), Page)
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(cert, key)
    tls_server.socket = context.wrap_socket(tls_server.socket, server_side=True)
    echo_server = socketserver.ThreadingTCPServer((address, 7), Echo)
    for target in (
        lambda: udp(53, dns_answer),
        lambda: udp(7, lambda data: data),
        http_server.serve_forever,
        tls_server.serve_forever,
        echo_server.serve_forever,
    ):
        threading.Thread(target=target, daemon=True).start()
    print(f"serving DNS, HTTP, TLS and echo on {address}", flush=True)
    while True:
        time.sleep(3600)


def client(address: str) -> None:
    context = ssl.create_default_context()
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE
    round_ = 0
    while True:
        round_ += 1
        steps = [
            lambda: dns_round(address, round_),
            lambda: urllib.request.urlopen(f"http://{address}/demo?round={round_}", timeout=2).read(),
            lambda: tls_round(address, context),
            lambda: tcp_echo(address, round_),
            lambda: udp_echo(address, round_),
        ]
        for step in steps:
            try:
                step()
            except OSError as error:
                print(f"demo traffic: {error}", file=sys.stderr, flush=True)
        time.sleep(0.5)


def dns_round(address: str, round_: int) -> None:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.settimeout(2)
        sock.sendto(dns_query(NAMES[round_ % len(NAMES)], round_ & 0xFFFF), (address, 53))
        sock.recvfrom(2048)


def tls_round(address: str, context: ssl.SSLContext) -> None:
    with socket.create_connection((address, 443), timeout=2) as raw:
        with context.wrap_socket(raw, server_hostname=TLS_NAME) as tls:
            tls.sendall(f"GET / HTTP/1.1\r\nHost: {TLS_NAME}\r\nConnection: close\r\n\r\n".encode())
            tls.recv(2048)


def tcp_echo(address: str, round_: int) -> None:
    with socket.create_connection((address, 7), timeout=2) as sock:
        sock.sendall(f"hello {round_}".encode())
        sock.recv(2048)


def udp_echo(address: str, round_: int) -> None:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.settimeout(2)
        sock.sendto(f"ping {round_}".encode(), (address, 7))
        sock.recvfrom(2048)


if __name__ == "__main__":
    if sys.argv[1] == "serve":
        serve(sys.argv[2], sys.argv[3], sys.argv[4])
    else:
        client(sys.argv[2])
