"""A model server that takes itself out of service when driftline opens its circuit breaker.

It serves predictions over HTTP, publishes one event per prediction to driftline's input topic,
and follows the control topic in a background thread. While the breaker for its model is open it
answers 503 (with the reason), so a load balancer or the caller's fallback takes over instead of
a person being paged, and keeps scoring in the dark: each request's prediction is still published,
marked ``"served": false``, so that driftline keeps judging the model and sends ``restore`` once the
evidence is clean again (a breaker that saw no traffic could only time out). Then it serves again.
On ``rollback`` it serves the command's ``target_version`` from then on (the release it was given
drifted as it took traffic) and says so on /status.

    python examples/model_server.py --bootstrap 127.0.0.1:9092 --port 8080
    curl 'http://127.0.0.1:8080/predict?amount=12.5&country=US&channel=web'
    curl http://127.0.0.1:8080/status

Everything driftline-specific is the ``ControlSubscriber`` below (about ten lines); the rest is a
stand-in for your model and web framework.
"""

from __future__ import annotations

import argparse
import json
import math
import signal
import threading
import time
import uuid
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, urlparse

from confluent_kafka import Producer

from stream.contract import Command
from stream.subscriber import BreakerBook, ControlSubscriber


def predict(amount: float) -> float:
    """The stand-in model: a fraud score from the amount."""
    return round(1.0 / (1.0 + math.exp(-(math.log1p(amount) - 4.0))), 4)


class Server:
    def __init__(self, bootstrap: str, model: str, version: str, predictions_topic: str, control_topic: str,
                 signing_key: bytes | None = None, position_file: str | None = None):
        self.model, self.version, self.topic = model, version, predictions_topic
        self.producer = Producer({"bootstrap.servers": bootstrap, "linger.ms": 20})
        self.last_command: Command | None = None
        # driftline's side: follow the control topic for this model; the book knows if the breaker is open
        # (and, with a position file, which commands it applied: an older one copied back is ignored).
        self.control = ControlSubscriber(bootstrap, {model}, self._on_command, topic=control_topic,
                                         signing_key=signing_key, position_file=position_file)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._follow, daemon=True, name="control")
        self._thread.start()

    def _follow(self) -> None:
        while not self._stop.is_set():
            self.control.poll(0.5)

    def _on_command(self, cmd: Command, book: BreakerBook) -> None:
        self.last_command = cmd
        state = "OPEN: not serving" if book.is_open(self.model) else "closed: serving"
        print(f"control: {cmd.action} for {cmd.model} ({cmd.reason.summary}) -> breaker {state}, "
              f"version {book.serving(self.model) or self.version}", flush=True)

    def serving(self) -> bool:
        return not self.control.book.is_open(self.model)

    def current_version(self) -> str:
        """The version it serves: its own, or the one a rollback named."""
        return self.control.book.serving(self.model) or self.version

    def handle(self, query: dict[str, list[str]]) -> tuple[int, dict[str, object]]:
        serving = self.serving()
        amount = float(query.get("amount", ["0"])[0])
        segment = {k: query[k][0] for k in ("country", "channel") if k in query}
        score = predict(amount)  # scored either way: in the dark while the breaker is open
        version = self.current_version()
        event = {"event_id": uuid.uuid4().hex, "model": self.model, "model_version": version,
                 "ts": int(time.time() * 1000), "segment": segment, "prediction": score,
                 "features": {"amount": amount}, **({} if serving else {"served": False})}
        key = f"{self.model}|" + ",".join(f"{k}={v}" for k, v in sorted(segment.items()))
        self.producer.produce(self.topic, json.dumps(event).encode(), key=key.encode())
        self.producer.poll(0)
        if not serving:
            why = self.last_command.reason.summary if self.last_command is not None else "circuit breaker open"
            return 503, {"error": "model taken out of service by driftline", "reason": why}
        return 200, {"model": self.model, "version": version, "prediction": score}

    def close(self) -> None:
        self._stop.set()
        self._thread.join(timeout=5)
        self.control.close()
        self.producer.flush(10)


def serve(server: Server, port: int) -> ThreadingHTTPServer:
    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:  # noqa: N802
            url = urlparse(self.path)
            if url.path == "/predict":
                code, body = server.handle(parse_qs(url.query))
            elif url.path == "/status":
                code, body = 200, {"model": server.model, "serving": server.serving(),
                                   "version": server.current_version(), "released": server.version}
            else:
                code, body = 404, {"error": "try /predict or /status"}
            data = json.dumps(body).encode()
            self.send_response(code)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def log_message(self, format: str, *args: object) -> None:  # noqa: A002
            return

    httpd = ThreadingHTTPServer(("127.0.0.1", port), Handler)
    threading.Thread(target=httpd.serve_forever, daemon=True).start()
    return httpd


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--bootstrap", default="127.0.0.1:9092")
    ap.add_argument("--port", type=int, default=8080)
    ap.add_argument("--model", default="fraud")
    ap.add_argument("--version", default="3.1.0")
    ap.add_argument("--predictions-topic", default="predictions")
    ap.add_argument("--control-topic", default="model.control")
    ap.add_argument("--signing-key", help="the key driftline signs commands with ([commands] signing_key)")
    ap.add_argument("--position-file", help="where the control topic position is kept across restarts")
    args = ap.parse_args()
    server = Server(args.bootstrap, args.model, args.version, args.predictions_topic, args.control_topic,
                    args.signing_key.encode() if args.signing_key else None, args.position_file)
    httpd = serve(server, args.port)
    print(f"serving {args.model} {args.version} on http://127.0.0.1:{httpd.server_address[1]}/predict", flush=True)
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    try:
        stop.wait()
    except KeyboardInterrupt:
        pass
    finally:
        httpd.shutdown()
        server.close()


if __name__ == "__main__":
    main()
