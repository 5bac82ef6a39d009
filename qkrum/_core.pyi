def build_info() -> dict[str, object]:
    """Compiler, language standard and hardware threads the extension was built with."""
