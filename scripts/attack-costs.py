#!/usr/bin/env python3
"""What small requests cost the server: CPU seconds, peak and settled RSS.

Starts `custodia serve` (the binary given, default target/release/custodia)
on a fresh SQLite file, bootstraps a tenant with 100 users, then sends each
attack as an attacker would and prints, per attack, the server's CPU time
(user + system, from /proc), its RSS before, at peak (sampled every 10 ms)
and 5 s after, the wall time and what it answered.

    cargo build --release -p custodia && python3 scripts/attack-costs.py
    python3 scripts/attack-costs.py path/to/another/custodia   # to compare

Everything goes to 127.0.0.1; every loop is bounded.
"""

import base64
import json
import os
import socket
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
import urllib.error
from concurrent.futures import ThreadPoolExecutor

BINARY = os.path.abspath(sys.argv[1] if len(sys.argv) > 1 else "target/release/custodia")
PASSWORD = "a long attack passphrase"
TICKS = os.sysconf("SC_CLK_TCK")


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def post(url, body, token=None, headers=None, timeout=120):
    request = urllib.request.Request(url, data=json.dumps(body).encode(), method="POST")
    request.add_header("content-type", "application/json")
    if token:
        request.add_header("authorization", "Bearer " + token)
    for name, value in (headers or {}).items():
        request.add_header(name, value)
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:
            return response.status, response.read()
    except urllib.error.HTTPError as error:
        return error.code, error.read()


class Server:
    def __init__(self, binary, workdir):
        self.port = free_port()
        self.base = f"http://127.0.0.1:{self.port}"
        self.env = dict(
            os.environ,
            DATABASE_URL=f"sqlite://{workdir}/attack.db",
            CUSTODIA_MASTER_KEY=base64.b64encode(os.urandom(32)).decode(),
            CUSTODIA_LISTEN=f"127.0.0.1:{self.port}",
            RUST_LOG="warn",
        )
        boot = subprocess.run(
            [binary, "bootstrap", "--tenant-name", "Acme", "--owner-email",
             "owner@example.org", "--password-stdin"],
            input=PASSWORD + "\n", capture_output=True, text=True, env=self.env, cwd=workdir,
        )
        assert boot.returncode == 0, boot.stderr
        self.tenant = next(l.split()[1] for l in boot.stdout.splitlines() if l.startswith("tenant"))
        self.process = subprocess.Popen([binary, "serve"], env=self.env, cwd=workdir,
                                        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        for _ in range(300):
            try:
                socket.create_connection(("127.0.0.1", self.port), timeout=0.1).close()
                break
            except OSError:
                time.sleep(0.05)

    def cpu_seconds(self):
        fields = open(f"/proc/{self.process.pid}/stat").read().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / TICKS

    def rss_mib(self):
        for line in open(f"/proc/{self.process.pid}/status"):
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
        return 0.0

    def stop(self):
        self.process.kill()
        self.process.wait()


def measure(server, name, attack):
    time.sleep(1)
    before_rss, before_cpu = server.rss_mib(), server.cpu_seconds()
    peak = [before_rss]
    done = threading.Event()

    def sample():
        while not done.is_set():
            peak[0] = max(peak[0], server.rss_mib())
            time.sleep(0.01)

    sampler = threading.Thread(target=sample)
    sampler.start()
    start = time.monotonic()
    answer = attack()
    wall = time.monotonic() - start
    done.set()
    sampler.join()
    cpu = server.cpu_seconds() - before_cpu
    time.sleep(5)
    print(f"{name:<44} cpu {cpu:6.2f} s  wall {wall:6.2f} s  rss {before_rss:6.1f} -> "
          f"peak {peak[0]:7.1f} -> settled {server.rss_mib():6.1f} MiB  | {answer}", flush=True)


def main():
    workdir = tempfile.mkdtemp()
    server = Server(BINARY, workdir)
    try:
        status, body = post(server.base + "/auth/login", {
            "tenant_id": server.tenant, "email": "owner@example.org", "password": PASSWORD})
        owner = json.loads(body)["access_token"]
        register = "mutation($e: String!) { registerUser(input: { email: $e, profile: { displayName: \"A Name\", phone: \"+44 20 7946 0000\" } }) { consistencyToken } }"
        for i in range(100):
            post(server.base + "/graphql", {"query": register, "variables": {"e": f"user{i}@example.org"}}, owner)
        graphql = server.base + "/graphql"

        def nested():
            levels = 24
            query = f"query {{ ...F{levels} }}\nfragment F0 on Query {{ serverTime }}\n" + "".join(
                f"fragment F{i} on Query {{ ...F{i - 1} ...F{i - 1} }}\n" for i in range(1, levels + 1))
            status, body = post(graphql, {"query": query})
            return f"{len(query)} bytes sent, {status}, {len(body)} bytes: {body[:80]!r}"

        def aliases():
            query = "{ " + " ".join(
                f"u{i}: users(first: 100) {{ edges {{ node {{ email displayName phone }} }} }}"
                for i in range(200)) + " }"
            status, body = post(graphql, {"query": query}, owner)
            return f"{len(query)} bytes sent, {status}, {len(body)} bytes: {body[:80]!r}"

        def costliest_allowed():
            # As many aliases as the complexity limit lets through.
            for count in range(20, 0, -1):
                query = "{ " + " ".join(
                    f"u{i}: users(first: 100) {{ edges {{ node {{ email displayName phone }} }} }}"
                    for i in range(count)) + " }"
                status, body = post(graphql, {"query": query}, owner)
                if b'"errors"' not in body:
                    return f"{count} aliases, {status}, {len(body)} bytes"
            return "none allowed"

        def logins():
            def one(i):
                return post(server.base + "/auth/login", {
                    "tenant_id": server.tenant, "email": f"nobody{i}@example.org",
                    "password": "a wrong password"})[0]
            with ThreadPoolExecutor(60) as pool:
                statuses = list(pool.map(one, range(60)))
            return "statuses " + ", ".join(f"{s}x{statuses.count(s)}" for s in sorted(set(statuses)))

        def future_token():
            status, body = post(graphql, {"query": "{ serverTime }"},
                                headers={"x-consistency-token": "999999999999.999999999999"})
            return f"{status}: {body[:80]!r}"

        def variables():
            declared = ", ".join(f"$v{i}: Int" for i in range(5000))
            query = f"query Q({declared}) {{ serverTime }}"
            status, body = post(graphql, {"query": query})
            return f"{len(query)} bytes sent, {status}, {len(body)} bytes answered"

        print(f"binary {BINARY}, {os.cpu_count()} cores", flush=True)
        measure(server, "nested fragments (2^24 fields), anonymous", nested)
        measure(server, "200 aliases x users(first: 100), owner", aliases)
        measure(server, "the costliest users query allowed, owner", costliest_allowed)
        measure(server, "60 parallel anonymous logins", logins)
        measure(server, "far-future X-Consistency-Token", future_token)
        measure(server, "5,000 unused variables, anonymous", variables)
    finally:
        server.stop()


if __name__ == "__main__":
    main()
