#!/usr/bin/env python3
"""SCIM throughput through the full pipeline: a release build of
`custodia serve` on a fresh database, N concurrent clients on keep-alive
connections, each creating users (POST /Users), then PATCHing them
(Entra's disable: `active` "False"), then adding them to groups in
batches (PATCH /Groups). Prints requests per second and latency
percentiles per phase, as a table and as JSON lines.

    scripts/bench-scim.py                       # SQLite
    DATABASE_URL=postgres://postgres@127.0.0.1/bench_scim scripts/bench-scim.py

USERS (default 2000), CLIENTS (default 8). Standard library only.
"""

import base64
import http.client
import json
import os
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import urllib.parse

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
USERS = int(os.environ.get("USERS", "2000"))
CLIENTS = int(os.environ.get("CLIENTS", "8"))
PORT = 18090
USER = "urn:ietf:params:scim:schemas:core:2.0:User"
GROUP = "urn:ietf:params:scim:schemas:core:2.0:Group"
PATCH = "urn:ietf:params:scim:api:messages:2.0:PatchOp"


def run(*args, **kwargs):
    return subprocess.run(args, check=True, capture_output=True, text=True, **kwargs).stdout


def main():
    subprocess.run(["cargo", "build", "--release", "-q", "-p", "custodia"], cwd=ROOT, check=True)
    binary = os.path.join(ROOT, "target", "release", "custodia")
    work = tempfile.mkdtemp()
    env = dict(os.environ)
    env.setdefault("DATABASE_URL", f"sqlite://{work}/bench.db")
    env["CUSTODIA_MASTER_KEY"] = base64.b64encode(os.urandom(32)).decode()
    env["CUSTODIA_LISTEN"] = f"127.0.0.1:{PORT}"
    env["CUSTODIA_GRAPHQL_LIMIT_PER_IP"] = "1000000000"
    env["RUST_LOG"] = "warn"
    url = env["DATABASE_URL"]
    if url.startswith("postgres"):
        base, name = url.rsplit("/", 1)
        run("psql", f"{base}/postgres", "-qc", f"DROP DATABASE IF EXISTS {name}", "-c", f"CREATE DATABASE {name}")
    out = run(binary, "bootstrap", "--tenant-name", "Bench", "--owner-email", "bench@example.org",
              "--password-stdin", input="a long bench passphrase\n", env=env, cwd=work)
    tenant = next(line.split()[1] for line in out.splitlines() if line.startswith("tenant"))
    token = run(binary, "scim", "token", "create", "--tenant", tenant, "--name", "bench",
                env=env, cwd=work).strip().splitlines()[-1]
    server = subprocess.Popen([binary, "serve"], env=env, cwd=work, stderr=subprocess.DEVNULL)
    try:
        for _ in range(200):
            try:
                connection = http.client.HTTPConnection("127.0.0.1", PORT, timeout=1)
                connection.request("GET", "/health/live")
                if connection.getresponse().status == 200:
                    break
            except OSError:
                time.sleep(0.1)
        bench(token, env)
    finally:
        server.terminate()
        server.wait()


def phase(name, jobs, send):
    """Runs `send(connection, job)` for every job over CLIENTS connections."""
    latencies, errors, lock = [], [], threading.Lock()
    queue = list(jobs)
    queue.reverse()

    def worker():
        connection = http.client.HTTPConnection("127.0.0.1", PORT, timeout=30)
        while True:
            with lock:
                if not queue:
                    return
                job = queue.pop()
            start = time.perf_counter()
            status, body = send(connection, job)
            took = time.perf_counter() - start
            with lock:
                latencies.append(took)
                if status >= 300:
                    errors.append((status, body[:200]))

    threads = [threading.Thread(target=worker) for _ in range(CLIENTS)]
    start = time.perf_counter()
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    elapsed = time.perf_counter() - start
    if errors:
        print(f"{name}: {len(errors)} errors, first {errors[0]}", file=sys.stderr)
        sys.exit(1)
    latencies.sort()
    pick = lambda q: latencies[min(len(latencies) - 1, int(q * len(latencies)))] * 1000
    return {
        "phase": name,
        "requests": len(latencies),
        "clients": CLIENTS,
        "per_second": round(len(latencies) / elapsed, 1),
        "p50_ms": round(pick(0.50), 1),
        "p99_ms": round(pick(0.99), 1),
        "mean_ms": round(statistics.mean(latencies) * 1000, 1),
    }


def bench(token, env):
    headers = {"authorization": f"Bearer {token}", "content-type": "application/scim+json"}

    def request(connection, method, path, body=None):
        connection.request(method, f"/scim/v2{path}", body=json.dumps(body) if body else None, headers=headers)
        response = connection.getresponse()
        return response.status, response.read()

    ids = [None] * USERS

    def create(connection, n):
        status, body = request(connection, "POST", "/Users", {
            "schemas": [USER],
            "userName": f"user{n}@example.org",
            "externalId": f"ext-{n}",
            "name": {"givenName": f"Given{n}", "familyName": f"Family{n}"},
            "emails": [{"value": f"user{n}@example.org", "type": "work", "primary": True}],
            "active": True,
        })
        if status == 201:
            ids[n] = json.loads(body)["id"]
        return status, body

    def disable(connection, n):
        return request(connection, "PATCH", f"/Users/{ids[n]}", {
            "schemas": [PATCH],
            "Operations": [{"op": "Replace", "path": "active", "value": "False"}],
        })

    def lookup(connection, n):
        path = "/Users?filter=" + urllib.parse.quote(f'userName eq "user{n}@example.org"')
        return request(connection, "GET", path)

    results = [phase("create user (POST /Users)", range(USERS), create)]
    results.append(phase("find user (GET /Users?filter=userName eq)", range(USERS), lookup))
    results.append(phase("disable user (PATCH /Users, active \"False\")", range(USERS), disable))
    groups = []
    connection = http.client.HTTPConnection("127.0.0.1", PORT, timeout=30)
    for g in range(CLIENTS):
        status, body = request(connection, "POST", "/Groups", {"schemas": [GROUP], "displayName": f"Group {g}"})
        groups.append(json.loads(body)["id"])
    batches = [(g, ids[i:i + 10]) for g, i in zip(range(USERS), range(0, USERS, 10))]

    def add_members(connection, batch):
        number, members = batch
        return request(connection, "PATCH", f"/Groups/{groups[number % len(groups)]}", {
            "schemas": [PATCH],
            "Operations": [{"op": "Add", "path": "members", "value": [{"value": m} for m in members]}],
        })

    results.append(phase("add 10 members (PATCH /Groups)", batches, add_members))
    backend = "postgresql" if env["DATABASE_URL"].startswith("postgres") else "sqlite"
    print(f"\nSCIM through the full pipeline, {backend}, {USERS} users, {CLIENTS} clients")
    print(f"{'phase':48} {'req/s':>8} {'p50 ms':>8} {'p99 ms':>8}")
    for r in results:
        print(f"{r['phase']:48} {r['per_second']:>8} {r['p50_ms']:>8} {r['p99_ms']:>8}")
    for r in results:
        print(json.dumps({"backend": backend, **r}))


if __name__ == "__main__":
    main()
