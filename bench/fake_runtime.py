"""The smallest Lambda runtime API: hands one event to the first `next` call, prints how long the
function took from that hand-off to its response, then stops. Used by bench/cold-start.sh to time
the function's own start without an emulator's scheduling in between.

    python3 bench/fake_runtime.py EVENT.json PORT
"""
import http.server
import sys
import threading
import time

event = open(sys.argv[1], "rb").read()
handed = []


class Runtime(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def log_message(self, *args):
        pass

    def do_GET(self):
        if handed:  # the function polls again after answering: keep it waiting
            time.sleep(30)
            return
        handed.append(time.monotonic())
        self.send_response(200)
        self.send_header("Lambda-Runtime-Aws-Request-Id", "bench-1")
        self.send_header("Lambda-Runtime-Deadline-Ms", str(int(time.time() * 1000) + 30000))
        self.send_header(
            "Lambda-Runtime-Invoked-Function-Arn",
            "arn:aws:lambda:us-east-1:123456789012:function:srctraffic-api",
        )
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(event)))
        self.end_headers()
        self.wfile.write(event)

    def do_POST(self):
        body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
        self.send_response(202)
        self.send_header("Content-Length", "0")
        self.end_headers()
        status = "ok" if b'"statusCode":200' in body else "bad answer: " + body[:200].decode()
        print(f"{status} {(time.monotonic() - handed[0]) * 1000:.2f}", flush=True)
        threading.Thread(target=server.shutdown).start()


server = http.server.ThreadingHTTPServer(("127.0.0.1", int(sys.argv[2])), Runtime)
print("ready", flush=True)
server.serve_forever()
