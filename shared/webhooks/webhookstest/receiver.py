"""A webhook receiver for tests, verifying with the official standardwebhooks package.

It records every request to any path but /_*, answers 500 to the first
--fail of them and 204 after, and verifies a recorded request on demand:

    POST /_verify {"index": i, "secret": "whsec_...", "now": unix}
      -> {"ok": bool, "error": str, "payload": any}

Verification is standardwebhooks.Webhook(secret).verify(body, headers),
unchanged, except that its clock reads "now" when given: the sender under
test runs on a fake clock (retries hours apart), and the library's
timestamp tolerance (5 minutes) is checked against that clock.

    GET /_log -> [{"path", "headers", "status"}, ...]

It prints its port on the first line of stdout.
"""

import argparse
import json
import threading
from datetime import datetime, timezone
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import standardwebhooks.webhooks as swm
from standardwebhooks import Webhook


class Clock(datetime):
    fixed = None

    @classmethod
    def now(cls, tz=None):
        if cls.fixed is not None:
            return cls.fixed
        return datetime.now(tz)


swm.datetime = Clock

lock = threading.Lock()
log = []


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--fail", type=int, default=0)
    args = ap.parse_args()

    class Handler(BaseHTTPRequestHandler):
        def log_message(self, *a):
            pass

        def body(self):
            n = int(self.headers.get("Content-Length") or 0)
            return self.rfile.read(n)

        def answer(self, status, obj=None):
            data = b"" if obj is None else json.dumps(obj).encode()
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def do_GET(self):
            if self.path == "/_log":
                with lock:
                    self.answer(200, [{k: v for k, v in e.items() if k != "raw"} for e in log])
                return
            self.answer(404)

        def do_POST(self):
            raw = self.body()
            if self.path == "/_verify":
                req = json.loads(raw)
                with lock:
                    entry = log[req["index"]]
                    Clock.fixed = datetime.fromtimestamp(req["now"], tz=timezone.utc) if req.get("now") else None
                    try:
                        payload = Webhook(req["secret"]).verify(entry["raw"], entry["headers"])
                        out = {"ok": True, "payload": payload}
                    except Exception as e:  # noqa: BLE001 - reported to the test
                        out = {"ok": False, "error": f"{type(e).__name__}: {e}"}
                    finally:
                        Clock.fixed = None
                self.answer(200, out)
                return
            with lock:
                status = 500 if len(log) < args.fail else 204
                log.append({"path": self.path, "headers": {k.lower(): v for k, v in self.headers.items()}, "status": status, "raw": raw})
            self.answer(status)

    srv = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    print(srv.server_address[1], flush=True)
    srv.serve_forever()


if __name__ == "__main__":
    main()
