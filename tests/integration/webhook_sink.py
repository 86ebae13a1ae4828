#!/usr/bin/env python3
"""A webhook receiver for integration tests: appends one JSON line per POST to a file, with
the headers, the body and whether the X-Pgvigil-Signature header is a valid HMAC-SHA256 of
the body under the secret. Answers 500 to the first --fail-first requests (to exercise
retries). usage: webhook_sink.py PORT OUTFILE SECRET [--fail-first N]"""
import hashlib
import hmac
import json
import sys
from http.server import BaseHTTPRequestHandler, HTTPServer

port, out, secret = int(sys.argv[1]), sys.argv[2], sys.argv[3].encode()
fail_first = int(sys.argv[5]) if len(sys.argv) > 5 and sys.argv[4] == "--fail-first" else 0
seen = 0


class Sink(BaseHTTPRequestHandler):
    def do_POST(self):
        global seen
        seen += 1
        body = self.rfile.read(int(self.headers.get("Content-Length", "0")))
        want = "sha256=" + hmac.new(secret, body, hashlib.sha256).hexdigest()
        got = self.headers.get("X-Pgvigil-Signature", "")
        failing = seen <= fail_first
        rec = {"path": self.path, "headers": dict(self.headers.items()),
               "body": body.decode("utf-8", "replace"), "signature_ok": hmac.compare_digest(want, got),
               "answered": 500 if failing else 200}
        with open(out, "a") as f:
            f.write(json.dumps(rec) + "\n")
        self.send_response(500 if failing else 200)
        self.send_header("Content-Length", "0")
        self.end_headers()

    def log_message(self, *args):
        pass


HTTPServer(("127.0.0.1", port), Sink).serve_forever()
