"""What the tests and the benchmarks share: a config builder, appliance runners, real brokers, network namespaces, PKI."""
