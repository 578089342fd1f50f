"""The baseline: the seed's zeromq_proxy.py logic, a bare libzmq XSUB/XPUB proxy."""

import sys

import zmq


def run_proxy(frontend_port: int, backend_port: int) -> None:
    context = zmq.Context()
    frontend = context.socket(zmq.XSUB)
    frontend.bind(f"tcp://127.0.0.1:{frontend_port}")
    backend = context.socket(zmq.XPUB)
    backend.bind(f"tcp://127.0.0.1:{backend_port}")
    zmq.proxy(frontend, backend)


if __name__ == "__main__":
    run_proxy(int(sys.argv[1]), int(sys.argv[2]))
