"""LAN discovery over mDNS: the record an appliance advertises and the table of peers."""
