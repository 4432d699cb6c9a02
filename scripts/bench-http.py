#!/usr/bin/env python3
"""The HTTP figures of issue 14: a release build of `custodia serve` on a
fresh database, USERS accounts with passwords (made over SCIM), then
`custodia bench http` for each mode against it: `me`, `me` with two
personal fields, token refresh (32 connections), and password logins spread
over every account. Each mode runs against the same server; the last line
of each run is the server's peak resident memory so far. Rate limits are
raised for the run (they would otherwise answer 429, as they should).

    scripts/bench-http.py                                          # SQLite
    DATABASE_URL=postgres://postgres@127.0.0.1/bench_http scripts/bench-http.py

USERS (default 64), SECONDS_PER_MODE (default 10), CONNECTIONS (default 32; logins
use 8 per core, what the server admits to its password checks at once).
Prints what `custodia bench http` prints, then one JSON line per mode.
Standard library only; needs a release build (cargo build --release).
"""

import base64
import http.client
import json
import os
import re
import subprocess
import tempfile
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
USERS = int(os.environ.get("USERS", "64"))
SECONDS = os.environ.get("SECONDS_PER_MODE", "10")
CONNECTIONS = os.environ.get("CONNECTIONS", "32")
# Logins: no more at once than the server admits to its password checks
# (one per core, 8 waiting per core; beyond that it answers 429 at once).
LOGIN_CONNECTIONS = str(os.cpu_count() * 8)
PORT = 18093
USER = "urn:ietf:params:scim:schemas:core:2.0:User"
PASSWORD = "a long benchmark passphrase"


def run(*args, **kwargs):
    return subprocess.run(args, check=True, capture_output=True, text=True, **kwargs).stdout


def main():
    binary = os.path.join(ROOT, "target", "release", "custodia")
    work = tempfile.mkdtemp()
    env = dict(os.environ)
    env.setdefault("DATABASE_URL", f"sqlite://{work}/bench.db")
    env["CUSTODIA_MASTER_KEY"] = base64.b64encode(os.urandom(32)).decode()
    env["CUSTODIA_LISTEN"] = f"127.0.0.1:{PORT}"
    env["CUSTODIA_GRAPHQL_LIMIT_PER_IP"] = "1000000000"
    env["CUSTODIA_AUTH_LIMIT_PER_IP"] = "1000000000"
    env["CUSTODIA_AUTH_LIMIT_PER_ACCOUNT"] = "1000000000"
    env["RUST_LOG"] = "warn"
    url = env["DATABASE_URL"]
    backend = url.split(":")[0]
    if url.startswith("postgres"):
        base, name = url.rsplit("/", 1)
        run("psql", f"{base}/postgres", "-qc", f"DROP DATABASE IF EXISTS {name}", "-c", f"CREATE DATABASE {name}")
    out = run(binary, "bootstrap", "--tenant-name", "Bench", "--owner-email", "owner@example.org",
              "--password-stdin", input=PASSWORD + "\n", env=env, cwd=work)
    tenant = next(line.split()[1] for line in out.splitlines() if line.startswith("tenant"))
    token = run(binary, "scim", "token", "create", "--tenant", tenant, "--name", "bench",
                env=env, cwd=work).strip().splitlines()[-1]
    server = subprocess.Popen([binary, "serve"], env=env, cwd=work, stderr=subprocess.DEVNULL)
    try:
        wait_for_server()
        accounts = make_accounts(tenant, token)
        path = os.path.join(work, "accounts.json")
        with open(path, "w") as f:
            json.dump(accounts, f)
        time.sleep(1)  # the read models catch up with the new users
        for mode in ["me", "me-personal", "refresh", "login"]:
            printed = subprocess.run(
                [binary, "bench", "http", "--url", f"http://127.0.0.1:{PORT}", "--accounts", path,
                 "--mode", mode, "--connections", LOGIN_CONNECTIONS if mode == "login" else CONNECTIONS,
                 "--seconds", SECONDS,
                 "--server-pid", str(server.pid)],
                capture_output=True, text=True, env=env, cwd=work)
            print(printed.stdout.strip(), printed.stderr.strip())
            print(json.dumps({"bench": "http", "backend": backend, "mode": mode, **parse(printed.stdout)}))
    finally:
        server.terminate()
        server.wait()


def wait_for_server():
    for _ in range(200):
        try:
            connection = http.client.HTTPConnection("127.0.0.1", PORT, timeout=1)
            connection.request("GET", "/health/live")
            if connection.getresponse().status == 200:
                return
        except OSError:
            pass
        time.sleep(0.1)
    raise SystemExit("the server did not start")


def make_accounts(tenant, token):
    connection = http.client.HTTPConnection("127.0.0.1", PORT, timeout=30)
    headers = {"authorization": f"Bearer {token}", "content-type": "application/scim+json"}
    accounts = []
    for n in range(USERS):
        address = f"user{n}@example.org"
        body = {"schemas": [USER], "userName": address, "password": PASSWORD,
                "name": {"formatted": f"Bench User {n}"}, "displayName": f"Bench User {n}",
                "emails": [{"value": address, "primary": True}]}
        connection.request("POST", "/scim/v2/Users", body=json.dumps(body), headers=headers)
        response = connection.getresponse()
        answer = response.read()
        assert response.status == 201, (response.status, answer)
        accounts.append({"tenant_id": tenant, "email": address, "password": PASSWORD})
    return accounts


def parse(out):
    figures = {}
    m = re.search(r"(\d+) requests in .*?: (\d+) requests/s, (\d+) failed", out)
    if m:
        figures.update(requests=int(m.group(1)), per_second=int(m.group(2)), failed=int(m.group(3)))
    m = re.search(r"p50 ([\d.]+)(µs|ms|s) .*?p99 ([\d.]+)(µs|ms|s)", out)
    if m:
        scale = {"µs": 0.001, "ms": 1, "s": 1000}
        figures.update(p50_ms=round(float(m.group(1)) * scale[m.group(2)], 2),
                       p99_ms=round(float(m.group(3)) * scale[m.group(4)], 2))
    m = re.search(r"server peak memory: ([\d.]+) MiB", out)
    if m:
        figures["server_peak_mib"] = float(m.group(1))
    return figures


if __name__ == "__main__":
    main()
