"""Federation: trusted appliances linked into one bus over CURVE."""
