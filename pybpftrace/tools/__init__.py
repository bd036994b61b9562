"""The commands, one module each: a BPF program spec, how to feed its events, its output."""
