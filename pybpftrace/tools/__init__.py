"""The commands, one module each: a BPF program spec, how to feed its events, its output."""

# The probes each command needs, to say what works on a Python that lacks some.
NEEDED_PROBES: dict[str, tuple[str, ...]] = {
    "list": (),
    "stack": ("function__entry", "function__return"),
    "gc": ("gc__start", "gc__done"),
    "imports": ("import__find__load__start", "import__find__load__done"),
    "lines": ("line",),
    "calls": ("function__entry", "function__return"),
    "audit": ("audit",),
}
# The commands that read stacks out of the interpreter's memory: no probes needed.
STACK_COMMANDS = ("profile", "dump", "top")
