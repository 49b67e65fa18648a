"""The embedded chain node's process: JSON-RPC over HTTP on loopback.

Run by ``clearing chain start`` (chain/local.py) as
``python -m clearing_services.chain.server --home DIR --port N``; anything that
speaks Ethereum JSON-RPC (web3.py, ethers, cast, curl) can use it.
"""

from __future__ import annotations

import argparse
import logging
import signal
import sys
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import orjson

from clearing_services.chain.node import EmbeddedChain, RpcError

REQUEST_BYTES_MAX = 8 * 1024 * 1024  # a batch of 256 instructions is about 25 KB
BATCH_REQUESTS_MAX = 1_000
RPC_PARSE_ERROR = -32700
RPC_INVALID_REQUEST = -32600
_log = logging.getLogger("clearing.chain")


def answer(chain: EmbeddedChain, request: Any) -> dict[str, Any]:
    """One JSON-RPC 2.0 request -> its response object."""
    ident = request.get("id") if isinstance(request, dict) else None
    if not isinstance(request, dict) or not isinstance(request.get("method"), str):
        return _error(ident, RpcError(RPC_INVALID_REQUEST, "not a JSON-RPC request"))
    params = request.get("params", [])
    if not isinstance(params, list):
        return _error(ident, RpcError(RPC_INVALID_REQUEST, "params must be a list"))
    try:
        return {"jsonrpc": "2.0", "id": ident, "result": chain.request(request["method"], params)}
    except RpcError as exc:
        return _error(ident, exc)


def _error(ident: Any, exc: RpcError) -> dict[str, Any]:
    error: dict[str, Any] = {"code": exc.code, "message": exc.message}
    if exc.data is not None:
        error["data"] = exc.data
    return {"jsonrpc": "2.0", "id": ident, "error": error}


def handler_for(chain: EmbeddedChain) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"  # keep-alive: web3 reuses its connection
        disable_nagle_algorithm = True  # else each answer waits 40 ms for a delayed ACK

        def do_POST(self) -> None:
            length = int(self.headers.get("Content-Length") or 0)
            if length > REQUEST_BYTES_MAX:
                self._reply(_error(None, RpcError(RPC_INVALID_REQUEST, "request too large")))
                return
            try:
                body = orjson.loads(self.rfile.read(length))
            except orjson.JSONDecodeError:
                self._reply(_error(None, RpcError(RPC_PARSE_ERROR, "not JSON")))
                return
            if isinstance(body, list):
                if not body or len(body) > BATCH_REQUESTS_MAX:
                    self._reply(_error(None, RpcError(RPC_INVALID_REQUEST, "batch size")))
                    return
                self._reply([answer(chain, one) for one in body])
            else:
                self._reply(answer(chain, body))

        def _reply(self, payload: Any) -> None:
            data = orjson.dumps(payload)
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def log_message(self, format: str, *args: Any) -> None:
            _log.debug(format, *args)

    return Handler


def serve(home: Path, host: str, port: int) -> None:
    """Open the chain kept under ``home`` and serve it until SIGTERM or SIGINT."""
    chain = EmbeddedChain(home / "db")
    server = ThreadingHTTPServer((host, port), handler_for(chain))
    server.daemon_threads = True
    stop = threading.Event()

    def _stop(signum: int, _frame: object) -> None:
        stop.set()
        threading.Thread(target=server.shutdown, daemon=True).start()

    signal.signal(signal.SIGTERM, _stop)
    signal.signal(signal.SIGINT, _stop)
    print(f"embedded chain serving http://{host}:{port} from {home}", flush=True)
    try:
        server.serve_forever()
    finally:
        server.server_close()
        chain.close()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--home", type=Path, required=True)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, required=True)
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")
    serve(args.home, args.host, args.port)
    return 0


if __name__ == "__main__":
    sys.exit(main())
