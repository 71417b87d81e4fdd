"""``bsopt storage-proxy``: serve a storage to workers through Optuna's gRPC proxy."""

from __future__ import annotations

import argparse
from typing import Any

from bsopt.cli.options import add_storage, port


def add_storage_proxy(sub: Any) -> None:
    p = sub.add_parser("storage-proxy", help="serve a storage to workers over gRPC",
                       description="Serve a storage through Optuna's gRPC storage proxy; "
                       "workers use --storage grpc://HOST:PORT.")
    add_storage(p)
    p.add_argument("--host", default="127.0.0.1",
                   help="address to listen on (127.0.0.1; 0.0.0.0 for every interface, with "
                        "a warning: the proxy has no authentication)")
    p.add_argument("--port", type=port, default=13000, help="port (13000)")
    p.set_defaults(func=cmd_storage_proxy)


def cmd_storage_proxy(args: argparse.Namespace) -> int:
    from bsopt.storage.proxy import serve_storage_proxy

    serve_storage_proxy(args.storage, host=args.host, port=args.port)
    return 0
