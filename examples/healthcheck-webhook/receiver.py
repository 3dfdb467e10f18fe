#!/usr/bin/env python3
"""A webhook receiver for trying the example: prints each request's JSON body and
answers 200. Usage: python3 receiver.py [port]  (default 9000)."""
import http.server
import sys


class Handler(http.server.BaseHTTPRequestHandler):
    def do_POST(self):
        length = int(self.headers.get("Content-Length", 0))
        print(self.rfile.read(length).decode(), flush=True)
        self.send_response(200)
        self.send_header("Content-Length", "0")
        self.end_headers()

    def log_message(self, *args):
        pass


port = int(sys.argv[1]) if len(sys.argv) > 1 else 9000
http.server.HTTPServer(("127.0.0.1", port), Handler).serve_forever()
