"""A tenant's own mailer for the tests: takes Custodia's signed POSTs,
checks each signature with Python's own HMAC (an implementation
independent of the server's), and writes every accepted message to DIR as
one JSON file in the shape smtp_sink.py writes, so the tests read both
alike. The first FAIL_FIRST valid requests are answered 503, to show that
delivery is tried again.

    python3 webhook_sink.py --port PORT --dir DIR --secret-file FILE [--fail-first N]
"""

import argparse
import hashlib
import hmac
import json
import os
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

TOLERANCE_SECONDS = 300


def verified(secret, header, body):
    """Whether `header` (t=<unix>,v1=<hex>) signs `body` under `secret`."""
    try:
        fields = dict(part.split("=", 1) for part in header.split(","))
        t = int(fields["t"])
        given = fields["v1"]
    except (KeyError, ValueError):
        return False
    if abs(time.time() - t) > TOLERANCE_SECONDS:
        return False
    expected = hmac.new(secret, f"{t}.".encode() + body, hashlib.sha256).hexdigest()
    return hmac.compare_digest(expected, given)


def handler(directory, secret, fail_first):
    state = {"count": 0, "failed": 0}
    lock = threading.Lock()

    class Handler(BaseHTTPRequestHandler):
        def log_message(self, *args):
            pass

        def do_POST(self):
            length = int(self.headers.get("Content-Length", "0"))
            body = self.rfile.read(length)
            if not verified(secret, self.headers.get("Custodia-Signature", ""), body):
                self.send_response(401)
                self.end_headers()
                return
            with lock:
                if state["failed"] < fail_first:
                    state["failed"] += 1
                    self.send_response(503)
                    self.end_headers()
                    return
                state["count"] += 1
                name = f"{time.time_ns()}-{state['count']}.json"
            mail = json.loads(body)
            record = {
                "rcpt_to": [mail["to"]],
                "to": mail["to"],
                "subject": mail["subject"],
                "message_id": self.headers.get("Custodia-Message-Id"),
                "id": mail["id"],
                "tenant": mail["tenant"],
                "kind": mail["kind"],
                "text": mail["text"],
                "html": mail["html"],
            }
            path = os.path.join(directory, name)
            with open(path + ".tmp", "w") as f:
                json.dump(record, f)
            os.rename(path + ".tmp", path)
            self.send_response(204)
            self.end_headers()

    return Handler


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--dir", required=True)
    parser.add_argument("--secret-file", required=True)
    parser.add_argument("--fail-first", type=int, default=0)
    args = parser.parse_args()
    with open(args.secret_file, "rb") as f:
        secret = f.read().strip()
    server = ThreadingHTTPServer(("127.0.0.1", args.port),
                                 handler(args.dir, secret, args.fail_first))
    server.serve_forever()


if __name__ == "__main__":
    main()
