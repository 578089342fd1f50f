"""Certificates: a local CA, the server certificate, renewal in a worker process."""
