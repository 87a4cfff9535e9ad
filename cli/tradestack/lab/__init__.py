"""The lab: a topology turned into a real network of namespaces on one Linux host."""
