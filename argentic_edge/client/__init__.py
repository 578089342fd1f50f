"""What agents and scripts import: bus clients and find_edge()."""
