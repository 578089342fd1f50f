"""The bus: libzmq XSUB/XPUB proxies, plain and federated, and their counters."""
