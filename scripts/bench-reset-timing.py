#!/usr/bin/env python3
"""Can a password-reset request tell a known address from an unknown one
by its answer or its timing? A release build of `custodia serve` on a fresh
database, N users with addresses (made over SCIM), then N reset requests
for known addresses and N for unknown ones, interleaved one by one on one
keep-alive connection, each address asked once (as an attacker enumerating
addresses would). Prints status, body and latency figures per group, as a
table and as JSON lines. The answer never waits on the lookup: the work
happens after it, on a queue (ADR 0013).

    scripts/bench-reset-timing.py                      # SQLite
    DATABASE_URL=postgres://postgres@127.0.0.1/bench_reset scripts/bench-reset-timing.py

N (default 50), ROUNDS (default 3: the whole comparison, on fresh
addresses each round). Standard library only.
"""

import base64
import hashlib
import http.client
import json
import os
import statistics
import subprocess
import tempfile
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
N = int(os.environ.get("N", "50"))
ROUNDS = int(os.environ.get("ROUNDS", "3"))
PORT = 18091
USER = "urn:ietf:params:scim:schemas:core:2.0:User"


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
    env["CUSTODIA_AUTH_LIMIT_PER_IP"] = "1000000"
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
        bench(tenant, token)
    finally:
        server.terminate()
        server.wait()


def figures(name, samples):
    ms = sorted(s * 1000 for s in samples)
    q = statistics.quantiles(ms, n=4)
    return {
        "group": name,
        "requests": len(ms),
        "median_ms": round(statistics.median(ms), 3),
        "p25_ms": round(q[0], 3),
        "p75_ms": round(q[2], 3),
        "mean_ms": round(statistics.mean(ms), 3),
        "max_ms": round(ms[-1], 3),
    }


def bench(tenant, token):
    connection = http.client.HTTPConnection("127.0.0.1", PORT, timeout=30)

    def send(method, path, body, headers):
        connection.request(method, path, body=json.dumps(body), headers=headers)
        response = connection.getresponse()
        return response.status, response.read()

    scim = {"authorization": f"Bearer {token}", "content-type": "application/scim+json"}
    plain = {"content-type": "application/json"}
    answers = {"known": set(), "unknown": set()}
    samples = {"known": [], "unknown": []}
    for round_ in range(ROUNDS):
        known = [f"known{round_}-{n}@example.org" for n in range(N)]
        unknown = [f"unknown{round_}-{n}@example.org" for n in range(N)]
        for address in known:
            status, body = send("POST", "/scim/v2/Users", {"schemas": [USER], "userName": address}, scim)
            assert status == 201, (status, body)
        time.sleep(1)
        for known_address, unknown_address in zip(known, unknown):
            # Alternate which goes first, so neither always follows the other's queued work.
            pair = [("known", known_address), ("unknown", unknown_address)]
            if len(samples["known"]) % 2:
                pair.reverse()
            for group, address in pair:
                start = time.perf_counter()
                status, body = send("POST", "/auth/password-reset", {"tenant": tenant, "email": address}, plain)
                samples[group].append(time.perf_counter() - start)
                answers[group].add((status, hashlib.sha256(body).hexdigest()[:16]))
                time.sleep(0.02)
    rows = [figures(group, samples[group]) for group in ("known", "unknown")]
    same_answer = answers["known"] == answers["unknown"] and len(answers["known"]) == 1
    print(f"{'group':8} {'requests':>8} {'median ms':>10} {'p25':>8} {'p75':>8} {'mean':>8} {'max':>8}")
    for row in rows:
        print(f"{row['group']:8} {row['requests']:>8} {row['median_ms']:>10} {row['p25_ms']:>8} "
              f"{row['p75_ms']:>8} {row['mean_ms']:>8} {row['max_ms']:>8}")
    difference = rows[0]["median_ms"] - rows[1]["median_ms"]
    spread = max(rows[0]["p75_ms"] - rows[0]["p25_ms"], rows[1]["p75_ms"] - rows[1]["p25_ms"])
    print(f"answers: known {sorted(answers['known'])}, unknown {sorted(answers['unknown'])}: "
          f"{'identical' if same_answer else 'DIFFERENT'}")
    print(f"median difference (known - unknown): {difference:.3f} ms; interquartile range up to {spread:.3f} ms")
    for row in rows:
        print(json.dumps({"bench": "reset_timing", "backend": os.environ.get("DATABASE_URL", "sqlite").split(":")[0], **row}))
    print(json.dumps({"bench": "reset_timing", "same_answer": same_answer,
                      "median_difference_ms": round(difference, 3), "iqr_ms": round(spread, 3)}))


if __name__ == "__main__":
    main()
