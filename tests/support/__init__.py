"""What the tests and the benchmarks share: the config builder and YAML writer (config), the
appliance runner (appliance), real brokers, network namespaces and a federated site, PKI."""
